"""The whole-image sharpening stage (anyrestore.archs.global_sharpen: unsharp mask or Gaussian Wiener
deconvolution), its place in NAFNet before the exposure curve, and `scripts/train_global_stage.py sharpen`."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy import ndimage

from _cli_testutil import load_script
from anyrestore.archs import build_model
from anyrestore.archs.global_sharpen import (N_FEATURES, PRIOR_RANGE, SIGMA_RANGE, GlobalSharpen, detail_features,
                                             gaussian_blur, gaussian_kernels)
from anyrestore.archs.motion_deblur import wiener_deconvolve
from anyrestore.checkpoints import load_model, save_model
from anyrestore.degradations.blur import gaussian_kernel
from anyrestore.degradations.pipeline import degrade
from anyrestore.metrics import psnr
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


@pytest.mark.parametrize("sigma", [0.6, 1.3, 3.0])
def test_wiener_kernels_are_the_degradation_library_gaussians(sigma):
    kernels = gaussian_kernels(torch.tensor([sigma, 1.0]))
    assert kernels.shape == (2, 19, 19)
    torch.testing.assert_close(kernels[0].float(), gaussian_kernel(19, sigma), rtol=0, atol=1e-6)


def _smooth_photo(seed=0, size=96):
    """A piecewise-smooth test image (blurred blocks): deconvolution can recover it, unlike white noise."""
    blocks = _rand(1, 3, size // 8, size // 8, seed=seed)
    return gaussian_blur(torch.nn.functional.interpolate(blocks, size=(size, size), mode="nearest"),
                         torch.tensor([0.7]))[0]


def test_wiener_mode_undoes_a_gaussian_blur_that_the_unsharp_mask_only_reduces():
    clean = _smooth_photo()
    blurred = degrade(clean, "blur:k13s2.0", seed=0)[0][None]
    wiener, unsharp = GlobalSharpen(mode="wiener"), GlobalSharpen()
    one, sigma = torch.ones(1), torch.tensor([2.0])
    deconvolved = wiener.apply(blurred, one, sigma, torch.tensor([1e-3]))
    reference = wiener_deconvolve(blurred, gaussian_kernel(19, 2.0)[None], torch.tensor([1e-3]))
    torch.testing.assert_close(deconvolved, reference, rtol=0, atol=1e-5)
    scores = {name: psnr(image.clamp(0, 1), clean[None]) for name, image in
              [("blurred", blurred), ("wiener", deconvolved),
               ("unsharp", max((unsharp.apply(blurred, torch.tensor([a]), sigma) for a in (0.5, 1.0, 2.0, 3.0)),
                               key=lambda y: psnr(y.clamp(0, 1), clean[None])))]}
    assert scores["wiener"] > scores["unsharp"] + 1.0 > scores["blurred"] + 2.0, scores
    half = wiener.apply(blurred, 0.5 * one, sigma, torch.tensor([1e-3]))  # the share blends linearly
    torch.testing.assert_close(half, 0.5 * (blurred + deconvolved), rtol=0, atol=1e-5)


def test_wiener_head_starts_near_the_identity_in_range_and_learns_through_every_output():
    head = GlobalSharpen(mode="wiener")
    assert head.mlp[-1].out_features == 3
    x = _smooth_photo(seed=1)[None]
    share, sigma, prior = head.from_features(detail_features(x))
    assert 0.01 < share.item() < 0.03
    assert SIGMA_RANGE[0] <= sigma.item() <= SIGMA_RANGE[1] and PRIOR_RANGE[0] <= prior.item() <= PRIOR_RANGE[1]
    assert (head(x, x) - x).abs().max() < 0.05
    blurred = gaussian_blur(x, torch.tensor([1.5]))
    out = head.apply(blurred, *head.from_features(detail_features(blurred)))
    (out - x).pow(2).mean().backward()
    grads = head.mlp[-1].weight.grad.abs().sum(dim=1)
    assert (grads > 0).all(), grads  # share, sigma and prior all receive a gradient
    with pytest.raises(ValueError, match="unknown sharpen mode 'deconv'"):
        GlobalSharpen(mode="deconv")


def test_wiener_sharpen_mode_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("nafnet-tiny", sharpen=True, sharpen_mode="wiener").eval()
    assert model.state_dict()["sharpen.mlp.4.weight"].shape == (3, 64)
    with torch.no_grad():
        model.sharpen.mlp[-1].bias.copy_(torch.tensor([4.0, 0.0, 0.0]))  # share 0.5
    loaded = load_model(save_model(model, tmp_path / "wiener.safetensors"))
    assert loaded.sharpen.mode == "wiener"
    x = _rand(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    unsharp = build_model("nafnet-tiny", sharpen=True)
    with pytest.raises(RuntimeError, match="size mismatch"):  # the two heads' files are not interchangeable
        unsharp.load_state_dict(model.state_dict())


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


@pytest.mark.parametrize("mode", ["unsharp", "wiener"])
def test_sharpen_stage_training_adds_only_the_head(tmp_path, capsys, mode):
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
                        "--samples", "16", "--steps", "20", "--batch", "8", "--blur-share", "0.5",
                        "--sharpen-mode", mode] + (["--deconvolution-steps", "6", "--gate-steps", "6"]
                                                   if mode == "wiener" else [])) == 0
    assert "blurred gain dB" in capsys.readouterr().out
    model = load_model(out)
    assert model.sharpen is not None and model.tone_curve is not None and model.sharpen.mode == mode
    assert model.arch_kwargs.get("sharpen_mode", "unsharp") == mode
    for key, value in previous.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert any(v.abs().sum() > 0 for k, v in model.state_dict().items() if k.startswith("sharpen.mlp.4"))
    # a second run would add the stage twice: refused with one line
    with pytest.raises(SystemExit, match="without a sharpen stage"):
        script.main(["sharpen", "--weights", str(out), "-o", str(tmp_path / "again.safetensors"),
                     "--photos", str(photos), "--samples", "4", "--steps", "1"])


def test_wiener_gate_labels_the_crops_the_whole_deconvolution_helps():
    script = _script()
    clean = torch.stack([_smooth_photo(seed=2), _rand(3, 96, 96, seed=3)])
    restored = torch.stack([gaussian_blur(clean[:1], torch.tensor([2.0]))[0], clean[1]])
    data = {"restored": restored, "clean": clean, "features": detail_features(restored)}
    head = GlobalSharpen(mode="wiener")
    with torch.no_grad():  # sigma 2 (sigmoid 0.6 of the range), prior at its low end
        head.mlp[-1].bias.copy_(torch.tensor([0.0, float(np.log(0.6 / 0.4)), -8.0]))
    helps, weight = script.deconvolution_gains(head, data, torch.arange(2))
    assert helps.tolist() == [1.0, 0.0]  # the blurred crop gains, the sharp noise-like one loses
    assert ((weight >= 0.05) & (weight <= 3.0)).all() and weight[0] > 1.0


def test_gate_and_deconvolution_phases_are_refused_outside_wiener_sharpen(tmp_path):
    with pytest.raises(SystemExit, match="for sharpen --sharpen-mode wiener"):
        _script().main(["sharpen", "--sharpen-mode", "unsharp", "--weights", str(tmp_path / "w.safetensors"),
                        "-o", str(tmp_path / "o"), "--gate-steps", "5"])
    with pytest.raises(SystemExit, match="for sharpen --sharpen-mode wiener"):
        _script().main(["tone_curve", "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "o"),
                        "--deconvolution-steps", "5"])


def test_the_wiener_share_yields_to_the_motion_deconvolution():
    head = GlobalSharpen(mode="wiener")
    with torch.no_grad():
        head.mlp[-1].bias[0] = 8.0  # share about 0.98
    parameters = head.from_features(detail_features(_rand(3, 3, 40, 40)))
    share, sigma, prior = head.yield_to_motion(parameters, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(share, parameters[0] * torch.tensor([1.0, 0.75, 0.0]))
    assert torch.equal(sigma, parameters[1]) and torch.equal(prior, parameters[2])
    assert head.yield_to_motion(parameters, None) is parameters
    restored = _rand(3, 3, 40, 40, seed=1)
    out = head(restored, restored, torch.tensor([0.0, 0.25, 1.0]))
    assert torch.equal(out[2], restored[2]) and not torch.allclose(out[0], restored[0], atol=1e-3)
    unsharp = GlobalSharpen()  # trained and shipped without the rule: unchanged
    plain = unsharp.from_features(detail_features(restored))
    assert unsharp.yield_to_motion(plain, torch.ones(3)) is plain


def _record_jpeg_calls(script) -> list[tuple[int, str]]:
    """Make the training script's JPEG encoder record each (quality, subsampling) it is asked for; returns the list."""
    calls = []
    real_jpeg = script.jpeg
    script.jpeg = lambda image, quality, subsampling: (calls.append((quality, subsampling))
                                                      or real_jpeg(image, quality=quality, subsampling=subsampling))
    return calls


def test_jpeg_negatives_of_the_wiener_sharpen_set():
    script = _script()
    calls = _record_jpeg_calls(script)
    clean = _rand(40, 3, 32, 32)
    degraded, blurred = script.blur_or_mix(clean, 0.3, 0, jpeg_share=0.4)
    jpeg_alone = len(calls)
    assert 0 < int(blurred.sum()) < 40 and jpeg_alone > 5
    assert all(15 <= q < 90 for q, _ in calls) and {s for _, s in calls} == set(script.JPEG_SUBSAMPLINGS)
    assert torch.equal(degraded, (degraded * 255).round() / 255)
    # without them every unblurred crop gets the training mixture, as in the shipped unsharp recipe
    calls.clear()
    degraded, blurred = script.blur_or_mix(clean, 0.3, 0)
    for i in torch.nonzero(~blurred).flatten()[:4].tolist():
        mixture = (script.degrade(clean[i], "default-model", seed=i)[0].clamp(0, 1) * 255).round() / 255
        assert torch.equal(degraded[i], mixture)


def test_blurred_then_jpeg_crops_of_the_sharpen_set():
    script = _script()
    calls = _record_jpeg_calls(script)
    clean = _rand(12, 3, 32, 32)
    plain, _ = script.blur_or_mix(clean, 1.0, 0)
    assert not calls
    degraded, blurred = script.blur_or_mix(clean, 1.0, 0, blur_jpeg_share=1.0)
    # every crop is blurred, then saved as JPEG at q 50-95: still marked blurred, and not the plain blurred crop
    assert bool(blurred.all()) and len(calls) == 12 and all(50 <= q < 96 for q, _ in calls)
    assert all(not torch.equal(a, b) for a, b in zip(degraded, plain))
    # share 0 draws nothing more: the shipped recipe's set, crop for crop
    calls.clear()
    mixed, _ = script.blur_or_mix(clean, 0.3, 0, jpeg_share=0.2)
    again, _ = script.blur_or_mix(clean, 0.3, 0, jpeg_share=0.2, blur_jpeg_share=0.0)
    assert torch.equal(again, mixed)


def test_jpeg_options_are_refused_outside_the_sharpen_stage(tmp_path, capsys):
    script = _script()
    common = ["--weights", str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "out.safetensors")]
    for option in ("--jpeg-share", "--blur-jpeg-share"):
        with pytest.raises(SystemExit, match=f"{option} is for the sharpen stage"):
            script.main(["tone_curve", *common, option, "0.5"])
    with pytest.raises(SystemExit):
        script.main(["sharpen", *common, "--blur-jpeg-share", "1.5"])
    assert "--blur-jpeg-share must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_training_sets_are_keyed_by_the_unet_alone():
    script = _script()
    model = build_model("nafnet-tiny", sharpen=True, tone_curve=True)
    before = script.unet_sha256(model)
    with torch.no_grad():
        model.sharpen.mlp[-1].bias.add_(1.0)
        model.tone_curve.mlp[-1].bias.add_(1.0)
    assert script.unet_sha256(model) == before  # a retrained stage keeps the caches
    with torch.no_grad():
        model.intro.bias.add_(1e-3)
    assert script.unet_sha256(model) != before


def test_a_negligible_wiener_share_skips_the_deconvolution_at_inference(monkeypatch):
    import anyrestore.archs.global_sharpen as module

    head = GlobalSharpen(mode="wiener")
    restored = _rand(2, 3, 40, 40)
    sigma, prior = torch.full((2,), 2.0), torch.full((2,), 0.01)
    calls = []
    real = module.wiener_deconvolve
    monkeypatch.setattr(module, "wiener_deconvolve", lambda *a: calls.append(1) or real(*a))
    assert head.apply(restored, torch.full((2,), 5e-4), sigma, prior) is restored and not calls
    head.apply(restored, torch.tensor([5e-4, 2e-3]), sigma, prior)  # one image above the threshold: computed
    trainable = torch.full((2,), 5e-4, requires_grad=True)  # training keeps the gradient of a closed gate
    head.apply(restored, trainable, sigma, prior).sum().backward()
    assert len(calls) == 2 and trainable.grad is not None and trainable.grad.abs().sum() > 0
