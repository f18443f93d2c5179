"""The colour-noise stage: the guided filter, the luma-preserving chroma smoothing, the gate and its training."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import anyrestore
from _cli_testutil import load_script
from anyrestore.archs import build_model
from anyrestore.archs.chroma_denoise import (N_FEATURES, RGB_TO_YCC, ChromaDenoise, box_mean, guided_filter,
                                             smooth_chroma)
from anyrestore.checkpoints import load_model, save_model
from anyrestore.inference import Predictor
from anyrestore.io import read_image, write_image

CHELSEA = Path(anyrestore.__file__).parent / "samples" / "chelsea.png"


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _ycc(x):
    return torch.einsum("oc,bchw->bohw", torch.tensor(RGB_TO_YCC, dtype=x.dtype), x)


def test_box_mean_is_the_window_average_with_mirrored_borders():
    x = _rand(1, 2, 9, 11, seed=1).double()
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    expected = torch.stack([torch.stack([padded[..., i:i + 5, j:j + 5].mean(dim=(-2, -1)) for j in range(11)], -1)
                            for i in range(9)], -2)
    torch.testing.assert_close(box_mean(x, 2), expected)
    assert box_mean(x[..., :1, :1], 2).shape == (1, 2, 1, 1)  # a 1-pixel image still works


def test_guided_filter_keeps_affine_functions_of_the_guide_and_flattens_noise_on_flat_guides():
    guide = _rand(1, 1, 24, 24, seed=2).double()
    torch.testing.assert_close(guided_filter(0.3 * guide + 0.1, guide, 2, 1e-8), 0.3 * guide + 0.1)
    flat = torch.full((1, 1, 24, 24), 0.5, dtype=torch.float64)
    noise = _rand(1, 2, 24, 24, seed=3).double()
    torch.testing.assert_close(guided_filter(noise, flat, 2, 1e-4), box_mean(box_mean(noise, 2), 2))


def test_smoothing_keeps_the_luma_and_removes_colour_noise():
    clean = read_image(CHELSEA)[:3, :96, :96].float()[None]
    speckles = _rand(1, 3, 96, 96, seed=4) - 0.5
    colour_noise = speckles - speckles.mean(dim=1, keepdim=True)  # zero mean over R, G and B
    noisy = clean + 0.08 * colour_noise
    smoothed = smooth_chroma(noisy)
    torch.testing.assert_close(_ycc(smoothed)[:, 0], _ycc(noisy)[:, 0], rtol=0, atol=1e-5)
    error = lambda x: (_ycc(x)[:, 1:] - _ycc(clean)[:, 1:]).pow(2).mean()  # noqa: E731
    assert error(smoothed) < 0.5 * error(noisy)


def test_the_stage_blends_its_share_of_the_filtered_image():
    stage = ChromaDenoise()
    degraded = _rand(2, 3, 40, 48, seed=5)
    restored = (degraded + 0.05 * _rand(2, 3, 40, 48, seed=6)).clamp(0, 1)
    features, smoothed = stage.prepare(degraded, restored)
    assert features.shape == (2, N_FEATURES) and torch.isfinite(features).all()
    share = stage.share(features)
    torch.testing.assert_close(share, torch.full((2,), 0.5))  # untrained
    torch.testing.assert_close(stage(degraded, restored), restored + 0.5 * (smoothed - restored))
    with torch.no_grad():
        stage.gate[-1].bias.fill_(-30.0)
    torch.testing.assert_close(stage(degraded, restored), restored)  # a closed gate is the identity


def test_the_stage_is_the_first_whole_image_stage_and_round_trips(tmp_path):
    model = build_model("nafnet-tiny", chroma_denoise=True, tone_curve=True)
    assert [type(s).__name__ for s in model.global_stage.stages] == ["ChromaDenoise", "GlobalToneCurve"]
    with torch.no_grad():
        model.chroma_denoise.gate[-1].bias.fill_(2.0)
        model.chroma_denoise.feature_scale.fill_(3.0)
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = _rand(3, 70, 90, seed=7)
    options = {"device": "cpu", "tile": 32, "overlap": 8, "fast": False, "channels_last": False}
    tiled = Predictor(loaded, **options)(x)
    local = Predictor(loaded, global_stage=False, **options)(x)
    with torch.no_grad():  # the stage runs once on the whole image, after the tiles
        torch.testing.assert_close(tiled, loaded.global_stage(x[None], local[None])[0].clamp(0, 1),
                                   rtol=0, atol=1e-5)


def test_chroma_denoise_training_equals_inference(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = read_image(CHELSEA)[:3]
    write_image(photos / "p0.png", photo[:, :, :200])
    write_image(photos / "p1.png", photo[:, :, 200:])
    torch.manual_seed(0)
    weights = save_model(build_model("nafnet-tiny"), tmp_path / "unet.safetensors")
    script = load_script("scripts/train_global_stage.py")
    script.shipped_photo_paths = lambda: []
    out, cache = tmp_path / "chroma.safetensors", tmp_path / "set.pt"
    assert script.main(["chroma_denoise", "--weights", str(weights), "-o", str(out), "--photos", str(photos),
                        "--samples", "12", "--steps", "10", "--batch", "4", "--noise-share", "0.5",
                        "--cache", str(cache)]) == 0
    assert "noisy gain dB" in capsys.readouterr().out
    model = load_model(out)
    data = torch.load(cache, weights_only=True)
    assert data["candidate"].shape == (12, 3, 128, 128)
    # inference recomputes the filtered image and the statistics from each (input, U-Net output) pair
    clean = script.make_crops(script.photo_paths([photos]), 12, 0)
    degraded, noisy = script.noise_or_mix(clean, 0.5, 0)
    assert 0 < int(noisy.sum()) < 12
    restored = script.restore_all(model, degraded)
    with torch.no_grad():
        trained = script.stage_output(model.chroma_denoise, data, torch.arange(12))
        inferred = model.chroma_denoise(degraded, restored)
    torch.testing.assert_close(trained, inferred, rtol=0, atol=1e-5)
    assert (inferred - restored).abs().max() > 1e-3
    with pytest.raises(SystemExit, match="without a chroma_denoise stage"):
        script.main(["chroma_denoise", "--weights", str(out), "-o", str(tmp_path / "again.safetensors"),
                     "--photos", str(photos), "--samples", "4", "--steps", "1"])
