"""The whole-image unsharp mask (anyrestore.archs.global_sharpen), its place in NAFNet before the exposure curve,
and `scripts/train_global_stage.py sharpen`."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy import ndimage

from _cli_testutil import load_script
from anyrestore.archs import build_model
from anyrestore.archs.global_sharpen import N_FEATURES, GlobalSharpen, detail_features, gaussian_blur
from anyrestore.checkpoints import load_model, save_model
from anyrestore.inference import Predictor
from anyrestore.io import write_image



def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_gaussian_blur_matches_scipy_with_mirrored_borders(sigma):
    x = _rand(2, 3, 30, 41)
    out = gaussian_blur(x, torch.tensor([sigma, sigma]))
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (2, 3)])
def test_the_default_model_restores_images_of_one_or_two_pixels(size):
    from anyrestore.api import load_model

    image = _rand(3, *size)
    out = Predictor(load_model(), device="cpu")(image)
    assert out.shape == image.shape and torch.isfinite(out).all()


def test_one_sigma_per_image():
    x = _rand(2, 1, 24, 24)
    out = gaussian_blur(x, torch.tensor([0.7, 2.0]))
    torch.testing.assert_close(out[1:], gaussian_blur(x[1:], torch.tensor([2.0])), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:1], gaussian_blur(x[:1], torch.tensor([0.7])), rtol=0, atol=1e-6)


def test_zero_amount_is_the_identity_and_the_untrained_head_nearly():
    head = GlobalSharpen().eval()
    x = _rand(1, 3, 40, 40)
    torch.testing.assert_close(head.apply(x, torch.zeros(1), torch.ones(1)), x, rtol=0, atol=0)
    amount, sigma = head.from_features(detail_features(x))
    assert 0 < amount.item() < 0.003 and 0.5 <= sigma.item() <= 3.0
    assert (head(x, x) - x).abs().max() < 0.01


def test_detail_features_see_blur_and_stay_bounded_in_cost():
    sharp = _rand(1, 3, 96, 96)
    blurred = gaussian_blur(sharp, torch.tensor([2.0]))
    f_sharp, f_blur = detail_features(sharp), detail_features(blurred)
    assert f_sharp.shape == (1, N_FEATURES)
    assert f_blur[0, 0] < f_sharp[0, 0] - 1.0  # finest band: log energy drops by more than e
    big = _rand(1, 3, 900, 1000)
    torch.testing.assert_close(detail_features(big), detail_features(big[..., 66:834, 116:884]))  # centred 768² crop


def test_nafnet_applies_the_unsharp_mask_before_the_exposure_curve():
    torch.manual_seed(0)
    model = build_model("nafnet-tiny", sharpen=True, tone_curve=True).eval()
    assert {k.split(".")[0] for k in model.state_dict()} >= {"sharpen", "tone_curve"}
    with torch.no_grad():
        model.sharpen.mlp[-1].bias.copy_(torch.tensor([7.0, 0.0]))  # amount about 1
        model.tone_curve.mlp[-1].bias[-1] = 3.0
        model.tone_curve.mlp[-1].bias[:4] += 2.0  # a brightening curve
        x = _rand(1, 3, 48, 64) * 0.5
        local = model.forward_local(x)
        expected = model.tone_curve(x, model.sharpen(x, local.clamp(0, 1)))
        torch.testing.assert_close(model(x), expected)
        assert (model.sharpen(x, local) - local).abs().max() > 0.01
    whole = Predictor(model, device="cpu", tile=0, fast=False, channels_last=False)(x[0])
    torch.testing.assert_close(whole, expected[0].clamp(0, 1), rtol=0, atol=1e-5)
    options = {"device": "cpu", "tile": 32, "overlap": 8, "fast": False, "channels_last": False}
    tiled = Predictor(model, **options)(x[0])
    local_tiles = Predictor(model, global_stage=False, **options)(x[0])
    with torch.no_grad():  # both stages run once on the whole image, after the tiles
        torch.testing.assert_close(tiled, model.global_stage(x, local_tiles[None])[0].clamp(0, 1), rtol=0, atol=1e-5)


def _script():
    return load_script("scripts/train_global_stage.py")


def test_sharpen_stage_training_adds_only_the_head(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        write_image(photos / f"p{i}.png", _rand(3, 150, 170, seed=i))
    torch.manual_seed(0)
    previous = build_model("nafnet-tiny", tone_curve=True)
    weights = save_model(previous, tmp_path / "toned.safetensors")
    script = _script()
    script.shipped_photo_paths = lambda: []
    out = tmp_path / "sharpened.safetensors"
    assert script.main(["sharpen", "--weights", str(weights), "-o", str(out), "--photos", str(photos),
                        "--samples", "16", "--steps", "20", "--batch", "8", "--blur-share", "0.5"]) == 0
    assert "blurred gain dB" in capsys.readouterr().out
    model = load_model(out)
    assert model.sharpen is not None and model.tone_curve is not None
    for key, value in previous.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert any(v.abs().sum() > 0 for k, v in model.state_dict().items() if k.startswith("sharpen.mlp.4"))
    # a second run would add the stage twice: refused with one line
    with pytest.raises(SystemExit, match="without a sharpen stage"):
        script.main(["sharpen", "--weights", str(out), "-o", str(tmp_path / "again.safetensors"),
                     "--photos", str(photos), "--samples", "4", "--steps", "1"])
