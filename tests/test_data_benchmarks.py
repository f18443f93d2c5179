import json
import warnings

import numpy as np
import pytest
import torch

from anyrestore.data.benchmarks import (BENCHMARKS, PROTOCOLS, check_protocol, get_protocol, image_seed,
                                        iter_samples, resolve_benchmark, synthesize)
from anyrestore.data.datasets import DatasetLayoutError
from engine_fixtures import write_png

RNG = np.random.default_rng(0)
pytestmark = pytest.mark.filterwarnings("ignore:.*images, expected")


def img(h=24, w=20):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_every_protocol_names_registered_benchmarks():
    assert set(PROTOCOLS) == {"ram-7task", "promptir-3task", "aio-5task", "maskdcpt-5d", "maskdcpt-12d", "unirestorer-7task"}
    for proto in PROTOCOLS.values():
        assert proto.benchmarks and all(b in BENCHMARKS for b in proto.benchmarks)
    assert get_protocol("ram-7task").metric == "ram"


def test_layout_detection_canonical_and_alternates(tmp_path):
    # SOTS, RAM layout: hazy/clear with the prefix rule; GT larger than LQ is cropped top-left
    write_png(tmp_path / "SOTS/outdoor/hazy/0001_0.8_0.2.jpg", img(24, 20))
    write_png(tmp_path / "SOTS/outdoor/clear/0001.png", img(26, 22))
    # Rain100L: MaskDCPT-style rainy/norain with rain-N <-> norain-N
    for n in (1, 2):
        write_png(tmp_path / f"Rain100L/rainy/rain-{n}.png", img())
        write_png(tmp_path / f"Rain100L/norain/norain-{n}.png", img())
    # GoPro original scene layout
    for scene in ("GOPR0001_11_00", "GOPR0002_11_00"):
        write_png(tmp_path / f"GoPro/test/{scene}/blur/000001.png", img())
        write_png(tmp_path / f"GoPro/test/{scene}/sharp/000001.png", img())
        write_png(tmp_path / f"GoPro/test/{scene}/blur_gamma/000001.png", img())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sots = resolve_benchmark("sots-outdoor", tmp_path)
        rain = resolve_benchmark("rain100l", tmp_path)
        gopro = resolve_benchmark("gopro", tmp_path)
    assert sots.layout.gt == "SOTS/outdoor/clear" and sots.items[0][2].name == "0001.png"
    assert "expected 500" in sots.warnings[0]
    assert [(lq.name, gt.name) for _, lq, gt in rain.items] == [("rain-1.png", "norain-1.png"), ("rain-2.png", "norain-2.png")]
    assert [name for name, _, _ in gopro.items] == ["GOPR0001_11_00/000001", "GOPR0002_11_00/000001"]
    assert all(lq.parent.name == "blur" for _, lq, _ in gopro.items)
    name, lq, gt = next(iter_samples(sots, get_protocol("ram-7task")))
    assert lq.shape == gt.shape == (3, 24, 20)


def test_missing_benchmarks_are_listed(tmp_path):
    write_png(tmp_path / "Rain100L/input/a.png", img())
    write_png(tmp_path / "Rain100L/target/a.png", img())
    found, missing = check_protocol("promptir-3task", tmp_path)
    assert set(found) == {"rain100l"}
    assert len(missing) == 4 and any("SOTS/outdoor/hazy+SOTS/outdoor/gt" in m for m in missing)
    with pytest.raises(DatasetLayoutError, match="benchmark cbsd68-sigma25: not found under"):
        resolve_benchmark("cbsd68-sigma25", tmp_path)


def test_synthesized_lq_is_deterministic_per_image_and_protocol():
    gt = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    seed = image_seed("maskdcpt-5d", "cbsd68-sigma25", "0001", 25)
    a = synthesize(gt, ("noise", 25), seed=seed)
    assert torch.equal(a, synthesize(gt, ("noise", 25), seed=seed))
    assert not torch.equal(a, synthesize(gt, ("noise", 25), seed=image_seed("promptir-3task", "cbsd68-sigma25", "0001", 25)))
    noise = (a - gt).flatten() * 255
    assert 20 < float(noise.std()) < 30
    truncated = synthesize(gt, ("noise", 25), seed=seed, noise_rule="truncate")
    assert torch.equal(truncated * 255, (truncated * 255).round())
    unclipped = synthesize(gt, ("noise", 50), seed=seed, noise_rule="unclipped")
    assert float(unclipped.min()) < 0 or float(unclipped.max()) > 1
    jpeg = synthesize(gt, ("jpeg", 10), seed=0)
    assert jpeg.shape == gt.shape and not torch.equal(jpeg, gt)


def test_test_cli_prints_table_and_writes_csv_json(tmp_path, capsys):
    from anyrestore.cli import main

    root = tmp_path / "data"
    for name in ("a", "b"):
        write_png(root / f"Rain100L/input/{name}.png", img(32, 32))
        write_png(root / f"Rain100L/target/{name}.png", img(32, 32))
        write_png(root / f"CBSD68/original_png/{name}.png", img(32, 32))
    write_png(root / "SOTS/outdoor/hazy/0001_0.8_0.2.jpg", img(32, 32))
    write_png(root / "SOTS/outdoor/gt/0001.png", img(34, 34))
    out = tmp_path / "report"
    from anyrestore.archs.registry import build_model
    from anyrestore.checkpoints import save_model

    model = build_model("nafnet-tiny")
    with torch.no_grad():  # zero last conv: NAFNet's global residual makes the output equal the input
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    weights = save_model(model, tmp_path / "identity.safetensors")
    code = main(["test", "promptir-3task", "--model", str(weights), "--root", str(root), "--out", str(out),
                 "--save-images"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| model | SOTS | Rain100L | σ15 | σ25 | σ50 | Avg |" in text
    data = json.loads((out / "promptir-3task.json").read_text())[0]
    assert data["benchmarks"]["rain100l"]["count"] == 2 and data["record"]["protocol"] == "skimage"
    # identity model: output = input, so PSNR equals the input PSNR computed independently
    from skimage.metrics import peak_signal_noise_ratio

    from anyrestore.io import read_image

    expected = np.mean([peak_signal_noise_ratio(read_image(root / f"Rain100L/target/{n}.png").permute(1, 2, 0).numpy(),
                                                read_image(root / f"Rain100L/input/{n}.png").permute(1, 2, 0).numpy(),
                                                data_range=1) for n in ("a", "b")])
    assert data["benchmarks"]["rain100l"]["psnr"] == pytest.approx(expected, abs=1e-6)
    csv_lines = (out / "promptir-3task.csv").read_text().splitlines()
    assert csv_lines[0].startswith("model,protocol,benchmark,psnr") and len(csv_lines) == 1 + 5 + 1
    assert len(list((out / "images" / "rain100l").glob("*.png"))) == 2
    # a missing benchmark without --skip-missing is one clear error
    code = main(["test", "ram-7task", "--model", str(weights), "--root", str(root), "--out", str(out)])
    assert code == 2
    assert "benchmark(s) of ram-7task missing" in capsys.readouterr().err
    assert main(["test", "promptir-3task", "--model", str(weights), "--root", str(root), "--limit", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--limit must be >= 1" in err and "\n" not in err


def test_skip_missing_reports_partial_table_and_strict_json(tmp_path, capsys):
    from anyrestore.archs.registry import build_model
    from anyrestore.checkpoints import save_model
    from anyrestore.cli import main

    root = tmp_path / "data"
    write_png(root / "rain13k/test/Rain100L/input/a.png", img(32, 32))
    write_png(root / "rain13k/test/Rain100L/target/a.png", img(32, 32))
    weights = save_model(build_model("nafnet-tiny"), tmp_path / "m.safetensors")
    out = tmp_path / "report"
    assert main(["test", "ram-7task", "--model", str(weights), "--root", str(root), "--out", str(out), "--skip-missing"]) == 0
    table = capsys.readouterr().out
    assert "| m | – | " in table and "*" in table  # SOTS missing; Rain13k from 1 of its 5 sets
    def refuse(name):
        raise ValueError(name)

    data = json.loads((out / "ram-7task.json").read_text(), parse_constant=refuse)[0]
    assert data["columns"]["SOTS"]["psnr"] is None and data["columns"]["Rain13k"]["complete"] is False
    assert data["record"]["crop_border"] == 4 and len(data["missing"]) == 12


def test_lsdir_val_centre_crop_then_ram_blur_and_jpeg(tmp_path):
    import cv2

    from anyrestore.io import read_image

    big, small = img(600, 530), img(300, 280)
    write_png(tmp_path / "LSDIR-val/0001000/big.png", big)
    write_png(tmp_path / "LSDIR-val/0001000/small.png", small)
    proto = get_protocol("ram-7task")
    for bench, check in (("lsdir-val-blur", "blur"), ("lsdir-val-jpeg", "jpeg")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolved = resolve_benchmark(bench, tmp_path)
        samples = {name: (lq, gt) for name, lq, gt in iter_samples(resolved, proto)}
        assert len(samples) == 2
        (lq_big, gt_big), = [v for k, v in samples.items() if k.endswith("big")]
        (lq_small, gt_small), = [v for k, v in samples.items() if k.endswith("small")]
        full = read_image(tmp_path / "LSDIR-val/0001000/big.png")
        # ram.md §7.1: centre 512 crop first (skipped when a side is < 512), degradation after the crop
        assert torch.equal(gt_big, full[:, 44:556, 9:521]) and gt_small.shape == (3, 300, 280)
        for lq, gt in ((lq_big, gt_big), (lq_small, gt_small)):
            arr = gt.permute(1, 2, 0).numpy() * 255
            if check == "blur":
                ref = cv2.GaussianBlur(arr, (15, 15), 2.0, borderType=cv2.BORDER_REFLECT_101)
                assert np.abs(lq.permute(1, 2, 0).numpy() * 255 - ref).max() < 1e-3
            else:
                _, buf = cv2.imencode(".jpg", np.round(arr).astype(np.uint8)[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 50])
                ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
                assert np.abs(lq.permute(1, 2, 0).numpy() * 255 - ref).max() <= 1 + 1e-3
