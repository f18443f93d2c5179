"""benchmarks/default_model.py: a quick run on a held-out photo, checked against independent recomputation."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CHELSEA = REPO / "anyrestore" / "samples" / "chelsea.png"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_default_model", REPO / "benchmarks" / "default_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_benchmark()


def _psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    x = np.round(a.clamp(0, 1).numpy().astype(np.float64) * 255)
    y = np.round(b.clamp(0, 1).numpy().astype(np.float64) * 255)
    return 10 * math.log10(255.0**2 / np.mean((x - y) ** 2))


def _run(bench, tmp_path, *extra):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "chelsea.png")
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    rc = bench.main(["--model", "classical", "--quick", "--photos", str(photos), "--crop", "96",
                     "--degradations", "noise:25,blur:k15s2.0", "--speed-size", "64", "--threads", "1",
                     "--json", str(out_json), "--markdown", str(out_md), *extra])
    return rc, out_json, out_md


def test_quick_run_reports_real_numbers(bench, tmp_path, capsys):
    rc, out_json, out_md = _run(bench, tmp_path)
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert report["model"] == "classical" and report["parameters"] == 0
    assert report["photos"] == ["chelsea.png"] and report["protocol"] == "basicsr"
    rows = {r["degradation"]: r for r in report["rows"]}
    assert list(rows) == ["noise:25", "blur:k15s2.0"]
    for r in rows.values():
        for key in ("input_psnr", "input_ssim", "output_psnr", "output_ssim", "gain_db"):
            assert math.isfinite(r[key]), (r["degradation"], key)
        assert r["status"] in ("PASS", "FAIL")
        assert r["gain_db"] == pytest.approx(r["output_psnr"] - r["input_psnr"])

    noise = rows["noise:25"]
    assert noise["input_psnr"] == pytest.approx(20.2, abs=1.0)
    assert noise["output_psnr"] > noise["input_psnr"] + 2.0  # NL-means on sigma 25 clearly denoises
    assert noise["baseline"]["name"] == "NLM"
    assert noise["baseline"]["psnr"] > noise["input_psnr"] + 2.0
    # the noise:25 target is relative to the baseline
    expected_margin = noise["output_psnr"] - noise["baseline"]["psnr"] - 1.5
    assert noise["margin_db"] == pytest.approx(expected_margin)
    assert noise["status"] == ("PASS" if expected_margin >= 0 else "FAIL")
    blur = rows["blur:k15s2.0"]
    assert blur["baseline"]["name"] == "unsharp" and blur["baseline"]["psnr"] > blur["input_psnr"]
    assert blur["margin_db"] == pytest.approx(blur["gain_db"] - 1.0)

    # independent recomputation of the noisy input and its PSNR from the documented seed rule
    from anyrestore.degradations import degrade
    from anyrestore.io import read_image

    clean = read_image(CHELSEA)[:3]
    h, w = clean.shape[-2:]
    clean = clean[:, (h - 96) // 2:(h - 96) // 2 + 96, (w - 96) // 2:(w - 96) // 2 + 96]
    seed = zlib.crc32(b"default-model/noise:25/chelsea.png")
    assert noise["per_image"][0]["seed"] == seed
    lq, _ = degrade(clean, "noise:25", seed=seed)
    assert noise["input_psnr"] == pytest.approx(_psnr_uint8(lq, clean), abs=1e-6)

    speed = report["speed"]
    assert speed["size"] == [64, 64] and speed["threads"] == 1 and speed["degradation"] == "noise:25"
    assert speed["seconds_per_mp"] > 0 and speed["status"] in ("PASS", "FAIL")

    text = out_md.read_text()
    assert "| Gaussian noise σ=25 | `noise:25` |" in text and "CPU speed:" in text and "(`noise:25`)" in text
    assert text == capsys.readouterr().out


def test_bad_input_is_one_line_error(bench, tmp_path, capsys):
    rc = bench.main(["--model", "classical", "--photos", str(tmp_path / "missing"), "--no-speed"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    rc = bench.main(["--model", "classical", "--photos", str(CHELSEA.parent), "--degradations", "nosie:25",
                     "--no-speed", "--quick", "--crop", "32", "--json", str(tmp_path / "x.json")])
    assert rc == 2 and not (tmp_path / "x.json").exists()
    assert "nosie" in capsys.readouterr().err


def test_trained_checkpoint_path_is_accepted(bench, tmp_path):
    from anyrestore.archs.registry import build_model
    from anyrestore.checkpoints import save_model

    torch.manual_seed(0)
    ckpt = save_model(build_model("nafnet-tiny"), tmp_path / "tiny.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "chelsea.png")
    out = tmp_path / "r.json"
    rc = bench.main(["--model", str(ckpt), "--quick", "--photos", str(photos), "--crop", "64",
                     "--degradations", "jpeg:30", "--no-speed", "--threads", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["parameters"] > 0 and len(report["model_sha256"]) == 64
    assert "speed" not in report
    row = report["rows"][0]
    assert row["baseline"] is None and math.isfinite(row["output_psnr"])


def test_random_level_spec_uses_each_images_own_sigma(bench, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(CHELSEA, photos / name)
    out = tmp_path / "r.json"
    rc = bench.main(["--model", "classical", "--photos", str(photos), "--crop", "48", "--degradations", "noise",
                     "--no-speed", "--threads", "1", "--json", str(out)])
    assert rc == 0
    row = json.loads(out.read_text())["rows"][0]
    sigmas = [r["params"]["sigma"] for r in row["per_image"]]
    assert sigmas[0] != sigmas[1] and row["params"] is None  # the seed differs by photo name
    assert row["target"] is None and row["status"] == "-"
    assert row["baseline"]["name"] == "NLM" and "h/sigma" in row["baseline"]["params"]


def test_float_inputs_skip_the_8bit_rounding(bench, tmp_path):
    """--float-inputs feeds the degradation's float output; the default rounds it to 8-bit levels first."""
    from anyrestore.degradations import build_sampler

    rows = {}
    for extra in ((), ("--float-inputs",)):
        folder = tmp_path / ("float" if extra else "8bit")
        folder.mkdir()
        rc, out_json, out_md = _run(bench, folder, "--no-speed", *extra)
        assert rc == 0
        report = json.loads(out_json.read_text())
        assert report["eight_bit_inputs"] == (not extra)
        assert ("not rounded to 8 bits" in out_md.read_text()) == bool(extra)
        rows[bool(extra)] = report["rows"][1]  # blur:k15s2.0
    clean = bench.centre_crop(bench.read_image(CHELSEA)[:3].float(), 96)
    lq, _ = build_sampler("blur:k15s2.0")(clean[None], seeds=[bench.seed_for("blur:k15s2.0", "chelsea.png")])
    lq = lq[0].clamp(0, 1)
    rounded = torch.round(lq * 255) / 255
    assert not torch.equal(lq, rounded)
    for floats, image in ((False, rounded), (True, lq)):
        assert rows[floats]["per_image"][0]["input_psnr"] == pytest.approx(
            bench.psnr(image, clean, protocol=bench.PROTOCOL), abs=1e-9)


def test_short_side_shrinks_each_photo_before_scoring_and_refuses_to_upscale(bench, tmp_path, capsys):
    import cv2

    from anyrestore.degradations import degrade
    from anyrestore.io import read_image

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "chelsea.png")  # 300x451
    out = tmp_path / "r.json"
    rc = bench.main(["--model", "classical", "--photos", str(photos), "--crop", "0", "--short-side", "120",
                     "--degradations", "noise:25", "--no-speed", "--threads", "1", "--json", str(out),
                     "--markdown", str(tmp_path / "r.md")])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["short_side"] == 120 and "120-px shorter side" in (tmp_path / "r.md").read_text()
    # independent: OpenCV's area resize of the stored 8-bit file, then the documented seed
    stored = cv2.cvtColor(cv2.imread(str(CHELSEA)), cv2.COLOR_BGR2RGB)
    h, w = stored.shape[:2]
    small = cv2.resize(stored, (round(w * 120 / h), 120), interpolation=cv2.INTER_AREA)
    clean = torch.from_numpy(small).permute(2, 0, 1).float() / 255
    assert torch.equal(bench.shrink_to_short_side(read_image(CHELSEA)[:3], 120, "c"), clean)
    lq, _ = degrade(clean, "noise:25", seed=zlib.crc32(b"default-model/noise:25/chelsea.png"))
    assert report["rows"][0]["input_psnr"] == pytest.approx(_psnr_uint8(lq, clean), abs=1e-6)

    capsys.readouterr()
    rc = bench.main(["--model", "classical", "--photos", str(photos), "--short-side", "301", "--no-speed",
                     "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not (tmp_path / "x.json").exists()
    assert len(err) == 1 and "--short-side 301 is larger than chelsea.png's shorter side (300 px)" in err[0]
