"""benchmarks/default_model_stage_scan.py: a whole-image stage kept vs left out, on five crops per photo."""
from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _cli_testutil import tiny_stage_model  # noqa: E402
from benchmarks import default_model_stage_scan as scan  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_stage_model(tmp_path_factory.mktemp("scan"), motion_deblur=True, sharpen=True)


def test_crops_are_the_centre_and_the_four_corners():
    image = torch.arange(3 * 300 * 400, dtype=torch.float32).view(3, 300, 400)
    parts = scan.crops(image)
    assert [tuple(p.shape) for p in parts] == [(3, 256, 256)] * 5
    assert torch.equal(parts[0], image[:, 22:278, 72:328]) and torch.equal(parts[4], image[:, 44:, 144:])
    assert [tuple(p.shape) for p in scan.crops(image[:, :100, :120])] == [(3, 100, 120)] * 5


def test_scan_reports_what_the_stage_changes_and_recomputes_by_hand(tiny, tmp_path, capsys):
    from anyrestore.checkpoints import load_model
    from anyrestore.io import read_image
    from anyrestore.metrics import psnr

    weights, photos = tiny
    out = tmp_path / "scan.json"
    rc = scan.main(["--model", str(weights), "--photos", str(photos), "--degradations",
                    "motion_blur:medium,noise:25", "--threads", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["degradation"]: r for r in report["rows"]}
    assert rows["motion_blur:medium"]["meant_for"] and not rows["noise:25"]["meant_for"]
    assert all(r["images"] == 5 and 0 <= r["changed"] <= 5 for r in rows.values())
    assert report["summary"]["images"] == 5
    # each row by hand: all stages against all but the motion stage, on the five crops
    model = load_model(weights).eval()
    for name in rows:
        deltas = []
        for index, crop in enumerate(scan.crops(read_image(photos / "chelsea.png")[:3].float())):
            rng = np.random.default_rng(zlib.crc32(f"scan/{name}/chelsea.png/{index}".encode()))
            clean = crop.permute(1, 2, 0).numpy().astype(np.float64)
            lq = torch.from_numpy(scan.CROSSCHECK[name][1](clean, rng).astype(np.float32)).permute(2, 0, 1)[None]
            with torch.inference_mode():
                local = model.forward_local(lq).clamp(0, 1)
                kept = model.sharpen(lq, model.motion_deblur(lq, local))[0].clamp(0, 1)
                left = model.sharpen(lq, local)[0].clamp(0, 1)
            deltas.append(psnr(kept, crop) - psnr(left, crop))
        if name.startswith("motion"):  # the untrained gate blends a few percent in where the input shows the blur
            assert min(abs(d) for d in deltas) > 0
        assert rows[name]["mean_db"] == pytest.approx(float(np.mean(deltas)), abs=1e-6)
        assert rows[name]["worst_db"] == pytest.approx(min(deltas), abs=1e-6)
    assert "Elsewhere (rows the stage is not meant for)" in capsys.readouterr().out


def test_a_model_without_the_stage_is_a_one_line_error(tiny, tmp_path, capsys):
    weights, photos = tiny
    rc = scan.main(["--model", str(weights), "--photos", str(photos), "--stage", "tone_curve",
                    "--degradations", "noise:25", "--json", str(tmp_path / "x.json")])
    assert rc == 2 and not (tmp_path / "x.json").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tone_curve" in err[0]


def test_leaving_out_one_exposure_head_keeps_the_other():
    from anyrestore.archs import build_model
    from anyrestore.archs.tone_curve import ToneCurveBySize

    model = build_model("nafnet-tiny", sharpen=True, tone_curve=True, photo_tone_curve=True)
    without_crop_head = scan.without_stage(model, "tone_curve").stages
    router = without_crop_head[-1]
    assert isinstance(router, ToneCurveBySize) and router.crop is None and router.photo is model.photo_tone_curve
    assert model.tone_curve is not None  # put back
    without_sharpen = scan.without_stage(model, "sharpen").stages
    assert model.sharpen not in list(without_sharpen) and len(without_sharpen) == 1


def test_the_jpeg_expert_is_compared_with_the_unet_only_where_its_route_sends_an_image():
    import numpy as np
    from skimage import data as skdata

    from _cli_testutil import randomize_parameters
    from anyrestore.archs import build_model
    from anyrestore.degradations.jpeg import jpeg_uint8

    model = randomize_parameters(build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True), seed=0,
                                 scale=0.05).eval()
    with torch.no_grad():
        model.ending.weight.zero_()  # the U-Net returns its input, so the route passes a JPEG
        model.ending.bias.zero_()
    rgb = np.ascontiguousarray(skdata.astronaut()[128:384, 64:448])
    to_image = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    jpeg_image, png_image = to_image(jpeg_uint8(rgb, 30)), to_image(rgb)
    outputs_of = scan.with_and_without(model, "jpeg_expert")
    with torch.no_grad():
        with_expert, without = outputs_of(jpeg_image)
        torch.testing.assert_close(with_expert, model.global_stage(jpeg_image, model.forward_expert(jpeg_image)))
        torch.testing.assert_close(without, model.global_stage(jpeg_image, model.forward_local(jpeg_image)))
        assert not torch.allclose(with_expert, without)
        same, also_same = outputs_of(png_image)  # no JPEG table: the expert is not asked
        assert torch.equal(same, also_same)
    assert scan.stage_module(model, "jpeg_expert") is model.jpeg_expert
    assert scan.stage_module(build_model("nafnet-tiny", jpeg_projection=True), "jpeg_expert") is None