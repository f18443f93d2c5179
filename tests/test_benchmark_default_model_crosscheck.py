"""benchmarks/default_model_crosscheck.py: independently written degradations, checked on the held-out sample."""
from __future__ import annotations

import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHELSEA = REPO / "anyrestore" / "samples" / "chelsea.png"
sys.path.insert(0, str(REPO))

from benchmarks import default_model_crosscheck as cc  # noqa: E402


def _photo_dir(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CHELSEA, photos / "chelsea.png")
    return photos


def test_degradations_do_what_they_say():
    rng = np.random.default_rng(0)
    flat = np.full((40, 40, 3), 0.5)
    # blurs of a flat image are the image; every output is on the 8-bit grid and in range
    for fn in (lambda x: cc.gaussian_blur(x, 2.0), cc.motion_blur):
        np.testing.assert_allclose(fn(flat), np.round(0.5 * 255) / 255, atol=1e-6)
    noisy = cc.add_noise(flat, rng, 25)
    assert abs(noisy.std() * 255 - 25) < 1.5 and np.allclose(noisy * 255, np.round(noisy * 255))
    # the motion kernel is a line at 30 degrees: an impulse spreads along it, up-right to down-left
    impulse = np.zeros((41, 41, 3))
    impulse[20, 20] = 1.0
    spread = cc.motion_blur(impulse)[..., 0]
    ys, xs = np.nonzero(spread > 0)
    slope = np.polyfit(xs - 20, -(ys - 20), 1)[0]
    assert slope == pytest.approx(math.tan(math.radians(30)), abs=0.1) and xs.max() - xs.min() >= 11
    # haze is thicker at the top; low light darkens by the stated curve; weather adds bright strokes/flakes
    hazy = cc.haze(np.zeros((64, 8, 3)))
    assert hazy[0].mean() > hazy[-1].mean() > 0
    assert cc.low_light(flat)[0, 0, 0] == pytest.approx(np.round(0.8 * 0.5**2.2 * 255) / 255)
    dark = np.full((64, 64, 3), 0.2)
    for fn in (cc.rain, cc.snow):
        out = fn(dark, np.random.default_rng(1))
        assert out.min() >= 0.2 - 1e-9 and (out > 0.4).mean() > 0.005
    # Pillow's JPEG changes a textured image and keeps its size
    tex = np.random.default_rng(2).random((32, 48, 3))
    jp = cc.pillow_jpeg(tex, 30)
    assert jp.shape == tex.shape and 0 < np.abs(jp - tex).mean() < 0.3
    # the chroma variants: 4:4:4 keeps colour detail that 4:2:0 averages over 2x2 pixels
    colour = np.random.default_rng(3).random((64, 64, 3))
    errors = {s: np.abs(cc.pillow_jpeg(colour, 90, s) - colour).mean() for s in ("4:4:4", "4:2:2", "4:2:0")}
    assert errors["4:4:4"] < errors["4:2:2"] < errors["4:2:0"]


def test_quick_run_scores_against_independent_recomputation(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cc.main(["--model", "classical", "--photos", str(_photo_dir(tmp_path)), "--crop", "64", "--threads", "1",
                  "--degradations", "noise:25,low_light:medium", "--json", str(out), "--markdown", str(tmp_path / "r.md")])
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["degradation"]: r for r in report["rows"]}
    noise = rows["noise:25"]
    assert noise["baseline"]["name"] == "NLM" and noise["baseline"]["psnr"] > noise["input_psnr"] + 2
    assert noise["margin_db"] == pytest.approx(noise["output_psnr"] - noise["baseline"]["psnr"] - 1.5)
    # recompute the noisy input from the documented seed rule and score it by hand
    from anyrestore.io import read_image

    clean = read_image(CHELSEA)[:3].float()
    h, w = clean.shape[-2:]
    clean = clean[:, (h - 64) // 2:(h - 64) // 2 + 64, (w - 64) // 2:(w - 64) // 2 + 64].permute(1, 2, 0).numpy()
    lq = cc.add_noise(clean.astype(np.float64), np.random.default_rng(zlib.crc32(b"crosscheck/noise:25/chelsea.png")), 25)
    mse = np.mean((np.round(lq * 255) - np.round(clean.astype(np.float64) * 255)) ** 2)
    assert noise["input_psnr"] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-6)
    low = rows["low_light:medium"]
    assert low["baseline"]["name"] == "gamma" and low["baseline"]["psnr"] > low["input_psnr"] + 5
    assert (tmp_path / "r.md").read_text() == capsys.readouterr().out
    assert "variants" not in report["summary"]


def test_jpeg_variants_are_judged_by_the_jpeg_target_and_counted_apart(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cc.main(["--model", "classical", "--photos", str(_photo_dir(tmp_path)), "--crop", "64", "--threads", "1",
                  "--degradations", "jpeg:30,jpeg:30/4:4:4", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {r["degradation"]: r for r in report["rows"]}
    assert rows["jpeg:30/4:4:4"]["target"] == rows["jpeg:30"]["target"]
    assert rows["jpeg:30/4:4:4"]["input_psnr"] > rows["jpeg:30"]["input_psnr"]  # no chroma subsampling loss
    variant = rows["jpeg:30/4:4:4"]["status"] == "PASS"
    assert report["summary"]["variants"] == {"passed": int(variant), "failed": int(not variant)}
    assert report["summary"]["passed"] + report["summary"]["failed"] == 1
    assert "Variants (other settings, same targets):" in capsys.readouterr().out


def test_heavy_snow_variant_covers_more_of_the_frame_and_is_judged_by_the_snow_target(tmp_path):
    clean = np.full((128, 128, 3), 0.3)
    medium = cc.CROSSCHECK["snow:medium"][1](clean, np.random.default_rng(0))
    heavy = cc.CROSSCHECK["snow:heavy"][1](clean, np.random.default_rng(0))
    covered = lambda x: float((x[..., 0] > 0.6).mean())  # noqa: E731
    assert covered(heavy) > 2 * covered(medium) > 0
    out = tmp_path / "r.json"
    assert cc.main(["--model", "classical", "--photos", str(_photo_dir(tmp_path)), "--crop", "64", "--threads", "1",
                    "--degradations", "snow:medium,snow:heavy", "--json", str(out)]) == 0
    rows = {r["degradation"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["snow:heavy"]["target"] == rows["snow:medium"]["target"]
    assert rows["snow:heavy"]["input_psnr"] < rows["snow:medium"]["input_psnr"]


def test_unknown_degradation_is_a_one_line_error(tmp_path, capsys):
    rc = cc.main(["--model", "classical", "--photos", str(_photo_dir(tmp_path)), "--degradations", "nosie:25",
                  "--json", str(tmp_path / "x.json")])
    assert rc == 2 and not (tmp_path / "x.json").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosie:25" in err[0]


def test_short_side_shrinks_the_photos_first(tmp_path):
    from anyrestore.io import read_image

    out = tmp_path / "r.json"
    rc = cc.main(["--model", "classical", "--photos", str(_photo_dir(tmp_path)), "--crop", "0", "--short-side", "100",
                  "--threads", "1", "--degradations", "noise:25", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["short_side"] == 100
    clean = cc.shrink_to_short_side(read_image(CHELSEA)[:3].float(), 100, "chelsea.png")
    assert tuple(clean.shape) == (3, 100, 150)  # 300x451 -> 100x150
    clean = clean.permute(1, 2, 0).numpy().astype(np.float64)
    lq = cc.add_noise(clean, np.random.default_rng(zlib.crc32(b"crosscheck/noise:25/chelsea.png")), 25)
    mse = np.mean((np.round(lq * 255) - np.round(clean * 255)) ** 2)
    assert report["rows"][0]["input_psnr"] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-6)
