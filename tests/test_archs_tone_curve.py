"""The global exposure curve (anyrestore.archs.tone_curve), its place in NAFNet and the Predictor's global stage,
and the script that trains it (scripts/train_global_stage.py tone_curve)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from _cli_testutil import load_script, randomize_parameters
from anyrestore.archs import build_model
from anyrestore.archs.tone_curve import (PHOTO_MIN_SIDE, GlobalToneCurve, ToneCurveBySize, apply_curve,
                                         brightness_features, curve_knots, thumbnail)
from anyrestore.checkpoints import load_model, save_model
from anyrestore.inference import Predictor
from anyrestore.io import write_image



def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _randomize_head(head: GlobalToneCurve, seed: int = 1) -> GlobalToneCurve:
    return randomize_parameters(head, seed=seed, scale=0.3)


def test_untrained_curve_is_the_identity():
    head = GlobalToneCurve().eval()
    degraded, restored = _rand(2, 3, 40, 56), _rand(2, 3, 40, 56, seed=1)
    values, share = head.estimate(degraded)
    torch.testing.assert_close(values, curve_knots(24).expand(2, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(head(degraded, restored), restored, rtol=0, atol=2e-6)


def test_apply_curve_matches_numpy_interp():
    knots = curve_knots(8)
    values = torch.stack([knots.sqrt(), knots ** 0.8])
    x = _rand(2, 3, 9, 7)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, float(knots[3])])  # both ends and a knot exactly
    out = apply_curve(x, knots, values)
    for b in range(2):
        ref = np.interp(x[b].numpy(), knots.numpy(), values[b].numpy())
        np.testing.assert_allclose(out[b].numpy(), ref, rtol=0, atol=1e-6)


def test_curve_is_monotone_and_spans_zero_to_one_whatever_the_weights():
    head = _randomize_head(GlobalToneCurve()).eval()
    values, share = head.estimate(_rand(5, 3, 32, 32))
    assert torch.all(values.diff(dim=1) > 0)
    torch.testing.assert_close(values[:, 0], torch.zeros(5))
    torch.testing.assert_close(values[:, -1], torch.ones(5))
    assert torch.all((share > 0) & (share < 1))


@pytest.mark.parametrize("channel_share", [0.0, 1.0])
def test_the_inverse_curve_undoes_a_pixel_gamma(channel_share):
    clean = _rand(1, 3, 64, 64) * 0.9 + 0.05
    grey = clean.mean(dim=1, keepdim=True).expand_as(clean).contiguous()  # grey: the value branch is exact too
    head = GlobalToneCurve()
    knots = head.knots
    values = ((knots / 0.8).clamp(max=1.0) ** (1 / 2.2))[None]
    dark = 0.8 * grey ** 2.2
    out = head.apply(dark, values, torch.tensor([channel_share]))
    assert (out - grey).abs().max() < 0.02
    assert (dark - grey).abs().mean() > 0.2


def test_features_read_the_whole_image_at_thumbnail_size():
    big = _rand(1, 3, 300, 520)
    assert thumbnail(big).shape[-2:] == (74, 128)
    assert thumbnail(big[..., :100, :90]).shape[-2:] == (100, 90)
    bright, dark = brightness_features(big), brightness_features(big * 0.2)
    assert bright.shape == (1, 29) and torch.all(dark[:, :26] < bright[:, :26])


def test_nafnet_without_the_curve_has_no_extra_keys_and_with_it_only_tone_keys():
    plain = build_model("nafnet-tiny")
    toned = build_model("nafnet-tiny", tone_curve=True)
    assert plain.global_stage is None and not any(k.startswith("tone_curve") for k in plain.state_dict())
    extra = set(toned.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("tone_curve.mlp.") for k in extra)
    assert set(plain.state_dict()) <= set(toned.state_dict())


def _toned_tiny(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("nafnet-tiny", tone_curve=True).eval()
    _randomize_head(model.tone_curve, seed + 1)
    return model


def test_predictor_applies_the_global_stage_once_on_the_whole_image():
    model = _toned_tiny()
    image = _rand(3, 80, 112, seed=4) * 0.3
    whole = Predictor(model, device="cpu", tile=0, fast=False, channels_last=False)(image)
    tiled = Predictor(model, device="cpu", tile=48, overlap=8, fast=False, channels_last=False)(image)
    local_tiled = Predictor(build_model("nafnet-tiny").eval(), device="cpu", tile=48, overlap=8, fast=False,
                            channels_last=False)
    local_tiled.model.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("tone")})
    with torch.no_grad():
        expected = model.tone_curve(image[None], local_tiled(image)[None])[0].clamp(0, 1)
    torch.testing.assert_close(tiled, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(whole, model(image[None])[0].clamp(0, 1), rtol=0, atol=1e-5)
    with torch.no_grad():  # the curve is not the identity here, so the stage did something
        assert (whole - model.forward_local(image[None])[0].clamp(0, 1)).abs().max() > 1e-3


def test_predictor_fast_paths_and_channels_last_keep_the_global_stage():
    model = _toned_tiny(3)
    image = _rand(3, 50, 70, seed=5) * 0.4
    plain = Predictor(model, device="cpu", tile=32, overlap=8, fast=False, channels_last=False)(image)
    fast = Predictor(model, device="cpu", tile=32, overlap=8)(image)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-4)


def test_model_with_the_curve_saves_and_loads_strictly(tmp_path):
    model = _toned_tiny(5)
    path = save_model(model, tmp_path / "toned.safetensors")
    loaded = load_model(path)
    assert loaded.global_stage is not None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _script():
    return load_script("scripts/train_global_stage.py")


def test_training_script_trains_only_the_head_and_brightens(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 160), torch.linspace(0, 1, 200), indexing="ij")
        write_image(photos / f"p{i}.png", torch.stack([xx, yy, (xx + yy) / 2]) * (0.5 + 0.2 * i) + 0.1)
    torch.manual_seed(0)
    backbone = build_model("nafnet-tiny")
    with torch.no_grad():  # a zero ending makes the U-Net the identity (a residual net with nothing learnt)
        backbone.ending.weight.zero_()
        backbone.ending.bias.zero_()
    weights = save_model(backbone, tmp_path / "unet.safetensors")
    out = tmp_path / "toned.safetensors"
    script = _script()
    script.shipped_photo_paths = lambda: []  # the package photos are not needed for the check
    assert script.main(["tone_curve", "--weights", str(weights), "-o", str(out), "--photos", str(photos), "--samples", "48",
                        "--steps", "150", "--batch", "16", "--lr", "5e-3", "--scene-share", "0", "--dark-share", "0.5"]) == 0
    model = load_model(out)
    for key, value in backbone.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert any(v.abs().sum() > 0 for k, v in model.state_dict().items() if k.startswith("tone_curve.mlp.4"))
    clean = torch.full((1, 3, 64, 64), 0.5)
    with torch.no_grad():
        brightened = model(0.8 * clean ** 2.2)
    assert brightened.mean() > (0.8 * clean ** 2.2).mean() + 0.05


def test_global_stage_false_and_local_only_run_the_u_net_alone(tmp_path):
    import anyrestore.api as api

    model = _toned_tiny(7)
    image = _rand(3, 48, 64, seed=6) * 0.3  # multiples of 16: no padding differences
    with torch.no_grad():
        local = model.forward_local(image[None])[0].clamp(0, 1)
    skipped = Predictor(model, device="cpu", tile=0, global_stage=False)(image)
    torch.testing.assert_close(skipped, local, rtol=0, atol=1e-5)
    kept = api.restore(image, model=model, tile=0, local_only=True)
    torch.testing.assert_close(kept, local, rtol=0, atol=1e-5)
    assert (api.restore(image, model=model, tile=0) - local).abs().max() > 1e-3


def test_restore_cli_local_only_flag(tmp_path):
    import anyrestore.cli as cli
    from anyrestore.io import read_image

    model = _toned_tiny(8)
    weights = save_model(model, tmp_path / "toned.safetensors")
    photo = tmp_path / "dark.png"
    write_image(photo, _rand(3, 32, 48, seed=9) * 0.25)
    outs = {}
    for flag in ([], ["--local-only"]):
        out = tmp_path / ("kept" if flag else "auto")
        assert cli.main(["restore", str(photo), "-o", str(out), "--model", str(weights), *flag]) == 0
        outs[bool(flag)] = read_image(out / "dark.png")
    with torch.no_grad():
        local = model.forward_local(read_image(photo)[None])[0].clamp(0, 1)
    assert (outs[True] - local).abs().max() <= 1 / 255 + 1e-6
    assert (outs[False] - outs[True]).abs().max() > 2 / 255


def _square_root_curve_model():
    """nafnet-tiny whose U-Net is the identity and whose curve is f(x) = sqrt(x) per channel (equal increments at
    the knots (k/K)^2): a strong, known brightening."""
    torch.manual_seed(0)
    model = build_model("nafnet-tiny", tone_curve=True).eval()
    head = model.tone_curve
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
        head.mlp[-1].bias[: head.segments] = -torch.log(head.knots.diff())
        head.mlp[-1].bias[head.segments] = 20.0  # per channel
    return model


def test_restore_cli_names_the_images_the_exposure_curve_brightened(tmp_path, capsys):
    import anyrestore.cli as cli
    from anyrestore.io import read_image

    weights = save_model(_square_root_curve_model(), tmp_path / "sqrt.safetensors")
    photos = tmp_path / "in"
    photos.mkdir()
    write_image(photos / "night.png", torch.full((3, 32, 32), 0.1))
    write_image(photos / "day.png", torch.full((3, 32, 32), 0.81))
    assert cli.main(["restore", str(photos), "-o", str(tmp_path / "auto"), "--model", str(weights)]) == 0
    out = capsys.readouterr().out
    night = read_image(tmp_path / "auto" / "night.png")
    assert abs(night.mean().item() - 0.1 ** 0.5) < 0.01  # the curve ran: sqrt(0.1) = 0.32
    assert "brightened 1 image(s)" in out and "night.png 0.10 -> 0.32" in out and "day.png" not in out.split("note:")[1]
    assert "--keep-exposure" in out.split("note:")[1]
    for flag in ("--local-only", "--keep-exposure"):
        kept = ["restore", str(photos), "-o", str(tmp_path / flag), "--model", str(weights), flag]
        assert cli.main(kept) == 0
        assert "note:" not in capsys.readouterr().out
        assert abs(read_image(tmp_path / flag / "night.png").mean().item() - 0.1) < 1 / 255


def test_keep_exposure_runs_every_other_whole_image_stage():
    import copy

    import anyrestore.api as api

    torch.manual_seed(3)
    model = build_model("nafnet-tiny", tone_curve=True, photo_tone_curve=True, photo_min_side=40,
                        chroma_denoise=True).eval()
    for head in (model.tone_curve, model.photo_tone_curve, model.chroma_denoise):
        randomize_parameters(head, seed=4, scale=0.3)
    no_curves = copy.deepcopy(model)
    no_curves.tone_curve = no_curves.photo_tone_curve = None
    image = _rand(3, 48, 64, seed=5) * 0.4
    assert [type(s).__name__ for s in model.global_stage.without_exposure().stages] == ["ChromaDenoise"]
    kept = api.restore(image, model=model, tile=0, keep_exposure=True)
    assert torch.equal(kept, api.restore(image, model=no_curves, tile=0))
    assert (kept - api.restore(image, model=model, tile=0, local_only=True)).abs().max() > 1e-3  # colour stage ran
    assert (api.restore(image, model=model, tile=0) - kept).abs().max() > 1e-3  # and the curve did not


def test_training_script_reuses_its_cache_only_for_the_same_recipe(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "p.png", _rand(3, 140, 150, seed=11))
    weights = save_model(build_model("nafnet-tiny"), tmp_path / "unet.safetensors")
    script = _script()
    script.shipped_photo_paths = lambda: []
    cache = tmp_path / "set.pt"
    base = ["tone_curve", "--weights", str(weights), "--photos", str(photos), "--samples", "12", "--steps", "4", "--batch", "4",
            "--mse-steps", "2", "--cache", str(cache)]
    runs = [("a", []), ("b", []), ("c", ["--dark-share", "0.5"])]
    for name, extra in runs:
        assert script.main([*base, "-o", str(tmp_path / f"{name}.safetensors"), *extra]) == 0
        runs[runs.index((name, extra))] = (name, capsys.readouterr().out)
    assert "training set from" not in runs[0][1] and "U-Net outputs computed" in runs[0][1]
    assert "training set from" in runs[1][1] and "U-Net outputs computed" not in runs[1][1]
    assert "training set from" not in runs[2][1]  # another recipe: rebuilt
    a, b = load_model(tmp_path / "a.safetensors"), load_model(tmp_path / "b.safetensors")
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_dark_windows_are_dark_in_the_photo_and_kept_as_they_are(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    texture = _rand(3, 400, 600, seed=12)
    photo = 0.55 + 0.4 * texture
    photo[:, :, :300] = 0.03 + 0.12 * texture[:, :, :300]  # the left half is a dark scene
    write_image(photos / "half.png", photo)
    script = _script()
    paths = [photos / "half.png"]
    thumbs, natural_dark = script.make_thumbnails(paths, 40, seed=3, dark_window_share=0.5)
    assert 5 < int(natural_dark.sum()) < 35
    assert torch.all(thumbs[natural_dark].mean(dim=(1, 2, 3)) < script.DARK_WINDOW_MEAN)
    plain, none_dark = script.make_thumbnails(paths, 40, seed=3)
    assert not none_dark.any() and plain.mean() > 0.3  # whole-photo views: half bright

    clean = thumbs.clone()
    degraded, under_exposed = script.degrade_all(clean, share=0.5, scene_share=0.5, seed=4, natural_dark=natural_dark)
    assert not under_exposed[natural_dark].any() and under_exposed[~natural_dark].any()
    assert torch.equal(clean[natural_dark], thumbs[natural_dark])  # never made a darker "scene": its own target
    assert not torch.equal(clean[~natural_dark], thumbs[~natural_dark])  # others did become dark scenes


def test_dark_scenes_keep_their_white_point_when_the_scale_range_is_one():
    """``--scene-scale 1 1``: a dark scene is ``x^g`` (exposed for its highlights), unlike an under-exposure; the
    default range (0.55-0.9) pulls the white point down as well."""
    script = _script()
    thumbs = _rand(6, 3, 32, 32, seed=13).clamp(0.05, 1.0)
    thumbs[:, :, 0, 0] = 1.0  # a white highlight in each
    clean = thumbs.clone()
    _, under_exposed = script.degrade_all(clean, share=0.0, scene_share=1.0, seed=5, scene_gamma=(1.5, 1.5),
                                          scene_scale=(1.0, 1.0))
    assert not under_exposed.any()
    torch.testing.assert_close(clean, (thumbs ** 1.5 * 255).round() / 255, rtol=0, atol=1e-6)
    assert torch.all(clean[:, :, 0, 0] == 1.0)
    default = thumbs.clone()
    script.degrade_all(default, share=0.0, scene_share=1.0, seed=5)
    assert torch.all(default.amax(dim=(1, 2, 3)) <= script.SCENE_SCALE[1] + 0.5 / 255 + 1e-6)  # 8-bit rounding


def _toned_model_and_photo(tmp_path, seed: int):
    """One random photo, a tiny model with a random exposure head saved, and the training script without the
    package photos."""
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "p.png", _rand(3, 140, 150, seed=seed))
    model = _toned_tiny(seed + 1)
    weights = save_model(model, tmp_path / "toned.safetensors")
    script = _script()
    script.shipped_photo_paths = lambda: []
    return photos, model, weights, script


def test_replace_trains_a_new_head_in_place_of_the_old_one(tmp_path):
    photos, model, weights, script = _toned_model_and_photo(tmp_path, 14)
    args = ["tone_curve", "--weights", str(weights), "--photos", str(photos), "--samples", "12", "--steps", "4",
            "--batch", "4", "--mse-steps", "2", "--scene-scale", "0.95", "1", "-o", str(tmp_path / "new.safetensors")]
    with pytest.raises(SystemExit, match="already has a tone_curve stage; .* or pass --replace"):
        script.main(args)
    assert script.main([*args, "--replace"]) == 0
    new = load_model(tmp_path / "new.safetensors")
    assert new.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        same = torch.equal(new.state_dict()[key], value)
        assert same != key.startswith("tone_curve.mlp"), key  # the U-Net kept, every head tensor new


@pytest.mark.parametrize("option, values", [("--scene-scale", ["0.9", "1.2"]), ("--scene-gamma", ["1.8", "1.0"])])
def test_impossible_dark_scene_ranges_are_refused_in_one_line(tmp_path, capsys, option, values):
    with pytest.raises(SystemExit) as exit_info:
        _script().main(["tone_curve", "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "o"),
                        option, *values])
    assert exit_info.value.code == 2
    assert f"{option} needs 0 < LOW <= HIGH" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _two_headed_tiny(seed: int = 20, **kwargs):
    torch.manual_seed(seed)
    model = build_model("nafnet-tiny", tone_curve=True, photo_tone_curve=True, **kwargs).eval()
    _randomize_head(model.tone_curve, seed + 1)
    _randomize_head(model.photo_tone_curve, seed + 2)
    return model


@pytest.mark.parametrize("size, head", [((PHOTO_MIN_SIDE, PHOTO_MIN_SIDE + 40), "photo_tone_curve"),
                                        ((PHOTO_MIN_SIDE - 1, PHOTO_MIN_SIDE - 1), "tone_curve"),
                                        ((512, 768), "photo_tone_curve"), ((768, 512), "photo_tone_curve"),
                                        ((512, 600), "tone_curve"), ((255, 400), "tone_curve"),
                                        ((256, 400), "photo_tone_curve"), ((64, 96), "tone_curve")])
def test_whole_photos_by_size_or_by_a_non_square_frame_may_take_the_photo_head(size, head, monkeypatch):
    from anyrestore.archs import tone_curve

    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (0.0, 1e-6))  # every whole photo looks under-exposed
    model = _two_headed_tiny()
    degraded = _rand(1, 3, *size, seed=21) * 0.3
    with torch.no_grad():
        local = model.forward_local(degraded).clamp(0, 1)
        expected = getattr(model, head)(degraded, local)
        other = getattr(model, "tone_curve" if head == "photo_tone_curve" else "photo_tone_curve")(degraded, local)
        torch.testing.assert_close(model(degraded), expected, rtol=0, atol=1e-6)
    assert (expected - other).abs().max() > 1e-3  # the two heads differ, so the test can tell which one ran


def test_the_photo_threshold_is_a_model_setting():
    model = _two_headed_tiny(25, photo_min_side=100)
    router = model.global_stage.stages[-1]
    assert isinstance(router, ToneCurveBySize) and router.min_side == 100
    assert router.is_whole_photo(100, 100) and not router.is_whole_photo(99, 99)
    assert _two_headed_tiny(25).global_stage.stages[-1].min_side == PHOTO_MIN_SIDE
    with pytest.raises(ValueError, match="photo_min_side must be a positive number of pixels, got 0"):
        build_model("nafnet-tiny", tone_curve=True, photo_tone_curve=True, photo_min_side=0)


def test_router_passes_an_image_without_its_head_unchanged(monkeypatch):
    from anyrestore.archs import tone_curve

    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (0.0, 1e-6))  # the photo head's curve wherever it may run
    router = ToneCurveBySize(None, _randomize_head(GlobalToneCurve()))
    small, large = _rand(1, 3, 40, 50), _rand(1, 3, PHOTO_MIN_SIDE, PHOTO_MIN_SIDE)
    assert torch.equal(router(small, small * 0.5), small * 0.5)
    assert not torch.equal(router(large, large * 0.5), large * 0.5)


def test_a_whole_photo_blends_in_the_photo_curve_by_how_much_that_one_brightens(monkeypatch):
    from anyrestore.archs import tone_curve

    photo, crop = _randomize_head(GlobalToneCurve(), 2), _randomize_head(GlobalToneCurve(), 1)
    large = _rand(2, 3, PHOTO_MIN_SIDE, PHOTO_MIN_SIDE, seed=3) * torch.tensor([0.4, 0.9]).view(2, 1, 1, 1)
    by_photo, by_crop = photo(large, large).detach(), crop(large, large).detach()
    assert (by_photo - by_crop).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # the test can tell the curves apart
    ratios = [float(r) for r in by_photo.mean(dim=(1, 2, 3)) / large.mean(dim=(1, 2, 3))]
    assert ratios[0] < 1 < ratios[1]  # the photo head darkens the first image and brightens the second
    router = ToneCurveBySize(crop, photo)
    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (1.0, 1.0 + 1e-6))  # only the second image, fully
    torch.testing.assert_close(router(large, large), torch.cat([by_crop[:1], by_photo[1:]]), atol=1e-6, rtol=0)
    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (ratios[1] + 1e-3, ratios[1] + 1.0))  # neither
    torch.testing.assert_close(router(large, large), by_crop, atol=1e-6, rtol=0)
    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (ratios[0] - 1.0, ratios[0] - 1e-3))  # both, fully
    torch.testing.assert_close(router(large, large), by_photo, atol=1e-6, rtol=0)
    # on the ramp: the second image a quarter of the way up, so a quarter of the photo curve
    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (ratios[1] - 0.1, ratios[1] + 0.3))
    torch.testing.assert_close(router(large, large)[1:], (0.75 * by_crop + 0.25 * by_photo)[1:], atol=1e-5, rtol=0)
    small = large[..., :300, :300]  # a square crop: the crop head's curve however much the photo head brightens
    torch.testing.assert_close(router(small, small), crop(small, small), atol=1e-6, rtol=0)
    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (1.0, 1.0 + 1e-6))  # without a crop head: the identity
    torch.testing.assert_close(ToneCurveBySize(None, photo)(large, large), torch.cat([large[:1], by_photo[1:]]),
                               atol=1e-6, rtol=0)


def test_a_photo_marked_jpeg_only_keeps_the_crop_curve_unless_that_one_brightens(monkeypatch):
    from anyrestore.archs import tone_curve

    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (0.0, 1e-6))  # unmarked photos: the photo head's curve
    photo, brightening, keeping = _randomize_head(GlobalToneCurve(), 2), _randomize_head(GlobalToneCurve(), 1), \
        GlobalToneCurve()  # untrained: the identity curve
    large = _rand(2, 3, PHOTO_MIN_SIDE, PHOTO_MIN_SIDE, seed=3) * 0.4
    marked = torch.tensor([True, False])
    by_photo = photo(large, large)
    assert (by_photo - large).abs().max() > 1e-3  # the photo head's curve would show
    out = ToneCurveBySize(keeping, photo)(large, large, marked)
    torch.testing.assert_close(out[:1], large[:1], atol=1e-5, rtol=0)  # the crop curve kept: the identity
    torch.testing.assert_close(out[1:], by_photo[1:], atol=1e-6, rtol=0)  # not marked: the photo head
    torch.testing.assert_close(ToneCurveBySize(None, photo)(large, large, marked)[:1], large[:1], atol=0, rtol=0)

    by_crop = brightening(large, large).detach()
    ratio = float(by_crop[0].mean() / large[0].mean())
    assert ratio >= tone_curve.CAUTIOUS_BRIGHTENING  # the crop head finds it under-exposed: the photo head's curve
    torch.testing.assert_close(ToneCurveBySize(brightening, photo)(large, large, marked), by_photo, atol=1e-6, rtol=0)
    monkeypatch.setattr(tone_curve, "CAUTIOUS_BRIGHTENING", ratio + 1e-3)  # just under the hand-over: kept
    torch.testing.assert_close(ToneCurveBySize(brightening, photo)(large, large, marked)[:1], by_crop[:1], atol=1e-6,
                               rtol=0)
    small = large[..., :64, :64]  # below the size threshold the crop head runs anyway
    torch.testing.assert_close(ToneCurveBySize(brightening, photo)(small, small, marked), brightening(small, small),
                               atol=1e-6, rtol=0)


def test_photo_head_keys_and_strict_round_trip(tmp_path):
    model = _two_headed_tiny(22)
    extra = set(model.state_dict()) - set(build_model("nafnet-tiny", tone_curve=True).state_dict())
    assert extra and all(k.startswith("photo_tone_curve.mlp.") for k in extra)
    loaded = load_model(save_model(model, tmp_path / "two.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    image = _rand(1, 3, PHOTO_MIN_SIDE, PHOTO_MIN_SIDE + 8, seed=23) * 0.3
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), model(image), rtol=0, atol=1e-6)


def test_training_the_photo_head_keeps_the_crop_head_and_names_the_run(tmp_path):
    photos, model, weights, script = _toned_model_and_photo(tmp_path, 24)
    out = tmp_path / "photo.safetensors"
    assert script.main(["photo_tone_curve", "--weights", str(weights), "--photos", str(photos), "--samples", "12",
                        "--steps", "4", "--batch", "4", "--mse-steps", "2", "--run", "my-run", "-o", str(out),
                        "--dark-window-share", "0.05"]) == 0
    new = load_model(out)
    with safe_open(out, "pt") as f:
        assert f.metadata()["run"] == "my-run" and f.metadata()["stage"] == "photo_tone_curve"
        recipe = json.loads(f.metadata()["stage_recipe"])  # the file records the options it was trained with
    assert (recipe["stage"], recipe["dark_windows"], recipe["samples"]) == ("photo_tone_curve", 0.05, 12)
    assert set(new.state_dict()) - set(model.state_dict()) == {k for k in new.state_dict()
                                                               if k.startswith("photo_tone_curve.")}
    for key, value in model.state_dict().items():  # the U-Net and the crop head kept byte for byte
        assert torch.equal(new.state_dict()[key], value), key
    assert any(v.abs().sum() > 0 for k, v in new.state_dict().items() if k.startswith("photo_tone_curve.mlp.4"))
    assert new.arch_kwargs["photo_min_side"] == PHOTO_MIN_SIDE  # the file records the threshold it routes by
    assert new.global_stage.stages[-1].min_side == PHOTO_MIN_SIDE


def test_the_photo_head_trainer_records_a_chosen_threshold_and_refuses_a_bad_one(tmp_path, capsys):
    photos, model, weights, script = _toned_model_and_photo(tmp_path, 26)
    common = ["photo_tone_curve", "--weights", str(weights), "--photos", str(photos), "--samples", "8", "--steps", "2",
              "--batch", "4", "--mse-steps", "1"]
    out = tmp_path / "photo.safetensors"
    assert script.main([*common, "--photo-min-side", "500", "-o", str(out)]) == 0
    new = load_model(out)
    assert new.arch_kwargs["photo_min_side"] == 500 and new.global_stage.stages[-1].min_side == 500
    with pytest.raises(SystemExit) as exit_info:
        script.main([*common, "--photo-min-side", "0", "-o", str(tmp_path / "bad.safetensors")])
    assert exit_info.value.code == 2
    assert "--photo-min-side must be a positive number of pixels, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()
