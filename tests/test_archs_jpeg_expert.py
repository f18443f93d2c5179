"""The JPEG expert (anyrestore.archs.jpeg_expert): its layers, the route to it, the Predictor, the CLI and the
training script."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from skimage import data as skdata

from _cli_testutil import load_script, randomize_parameters
from anyrestore.archs import build_model
from anyrestore.checkpoints import load_model, save_model
from anyrestore.degradations.jpeg import jpeg_uint8
from anyrestore.inference.predictor import Predictor


def _photo_and_jpeg(quality: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = np.ascontiguousarray(skdata.astronaut()[128:384, 64:448])
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0  # noqa: E731
    return to_tensor(rgb), to_tensor(jpeg_uint8(rgb, quality))


def _identity_unet_with_expert() -> torch.nn.Module:
    """nafnet-tiny whose U-Net returns its input (zero ending: the gate passes a JPEG) and whose expert does not."""
    model = build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True)
    randomize_parameters(model, seed=0, scale=0.05)
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    return model.eval()


def test_the_expert_holds_the_shallow_layers_and_starts_as_the_unet():
    with pytest.raises(ValueError, match="jpeg_expert needs jpeg_projection"):
        build_model("nafnet-tiny", jpeg_expert=True)
    with pytest.raises(ValueError, match="not available with TLC"):
        build_model("nafnet-w32", jpeg_projection=True, jpeg_expert=True)
    model = randomize_parameters(build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True), seed=1,
                                 scale=0.1).eval()
    base = {k for k in model.state_dict() if not k.startswith("jpeg_expert.")}
    shared = {k for k in base if k.startswith(("encoders.3.", "middle_blks."))}  # the deepest level, the middle
    assert shared and {k.removeprefix("jpeg_expert.") for k in model.state_dict() if k.startswith("jpeg_expert.")} \
        == base - shared
    x = torch.rand(2, 3, 40, 52)
    with torch.no_grad():
        assert not torch.allclose(model.forward_expert(x), model.forward_local(x))  # its own random weights
        model.jpeg_expert.init_from(model)
        assert torch.equal(model.forward_expert(x), model.forward_local(x))


def test_encoder_levels_choose_how_deep_the_expert_reaches():
    for levels in (4, 3, 1):
        model = randomize_parameters(build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True,
                                                 jpeg_expert_levels=levels), seed=levels, scale=0.1).eval()
        owned = {k.split(".")[2] for k in model.state_dict() if k.startswith("jpeg_expert.encoders.")}
        assert owned == {str(level) for level in range(levels)}
        x = torch.rand(1, 3, 32, 48)
        with torch.no_grad():
            model.jpeg_expert.init_from(model)
            before = model.forward_expert(x)
            for level in range(4):  # only the base's levels the expert does not own run inside its forward
                model.encoders[level].apply(lambda m: m.weight.add_(0.5) if isinstance(m, torch.nn.Conv2d) else None)
            assert torch.equal(model.forward_expert(x), before) == (levels == 4)
    with pytest.raises(ValueError, match="encoder_levels must be 0-4"):
        build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True, jpeg_expert_levels=5)
    with pytest.raises(ValueError, match="jpeg_expert_levels needs jpeg_expert=True"):
        build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert_levels=3)


def test_the_default_preset_gets_1_3_m_expert_parameters():
    model = build_model("nafnet-default", jpeg_expert=True)
    expert = sum(p.numel() for p in model.jpeg_expert.parameters())
    assert expert == 1_297_899
    deep = build_model("nafnet-default", jpeg_projection=True, jpeg_expert=True, jpeg_expert_levels=4)
    assert sum(p.numel() for p in deep.jpeg_expert.parameters()) == expert + 1_057_536  # + encoders.3
    assert sum(p.numel() for p in model.parameters()) == 4_467_637 + expert  # under the 8 M budget
    with pytest.raises(RuntimeError, match="no JPEG expert"):
        build_model("nafnet-tiny").forward_expert(torch.rand(1, 3, 16, 16))


def test_the_route_sends_only_a_jpeg_whose_only_damage_was_the_compression():
    model = _identity_unet_with_expert()
    clean, degraded = _photo_and_jpeg(30)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    batch = torch.stack([degraded, noisy, clean])
    with torch.no_grad():
        assert model.expert_route(batch).tolist() == [True, False, False]
        out = model(batch)
        stage = model.global_stage
        same = lambda a, b: torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # noqa: E731 (batch of 1 or 3)
        same(out[:1], stage(batch[:1], model.forward_expert(batch[:1])))
        same(out[1:], stage(batch[1:], model.forward_local(batch[1:])))
        assert not torch.allclose(out[:1], stage(batch[:1], model.forward_local(batch[:1])))
        # a base U-Net that moves every block (it brightens) closes the gate on the same JPEG
        model.ending.bias.fill_(0.2)
        assert model.expert_route(degraded[None]).tolist() == [False]
    assert build_model("nafnet-tiny", jpeg_projection=True).expert_route(batch) is None


def test_the_route_reads_a_centre_window_on_the_block_grid(monkeypatch):
    import anyrestore.archs.nafnet as nafnet

    model = _identity_unet_with_expert()
    seen = []
    real = model.forward_local
    monkeypatch.setattr(model, "forward_local", lambda x: seen.append(tuple(x.shape)) or real(x))
    monkeypatch.setattr(nafnet, "ROUTE_WINDOW", 100)
    _, degraded = _photo_and_jpeg(30)  # 256 x 384
    with torch.no_grad():
        assert model.expert_route(degraded[None]).tolist() == [True]
    assert seen == [(1, 3, 96, 96)]  # 100 px down to the pad multiple (16), from a corner on the 8-pixel grid
    seen.clear()
    with torch.no_grad():
        assert model.expert_route(torch.rand(1, 3, 128, 128)).tolist() == [False]
    assert seen == []  # no JPEG table: no U-Net run


def test_the_predictor_reruns_a_routed_image_with_the_expert_tile_by_tile_too():
    model = _identity_unet_with_expert()
    clean, degraded = _photo_and_jpeg(30)
    with torch.no_grad():
        expected = model(degraded[None])[0]
        local = model.forward_local(degraded[None])[0]
    whole = Predictor(model, tile=0)
    torch.testing.assert_close(whole(degraded), expected, atol=1e-5, rtol=0)
    assert whole.last_run["expert"] == [True]
    tiled = Predictor(model, tile=128, overlap=32)
    out = tiled(degraded)
    assert tiled.last_run["mode"] == "tiled" and tiled.last_run["expert"] == [True]
    assert (out - expected).abs().mean() < 0.01  # tiles of the expert, not of the base
    local_only = Predictor(model, tile=0, global_stage=False)
    torch.testing.assert_close(local_only(degraded), local, atol=1e-5, rtol=0)
    assert "expert" not in local_only.last_run
    png = Predictor(model, tile=0)
    png(clean)
    assert png.last_run["expert"] == [False]


def test_in_auto_mode_the_expert_runs_in_its_own_tiles_and_the_base_in_the_default_ones():
    from anyrestore.archs.nafnet import EXPERT_TILE

    model = _identity_unet_with_expert()
    assert model.expert_tile == EXPERT_TILE == 128
    assert build_model("nafnet-tiny").expert_tile is None
    clean, degraded = _photo_and_jpeg(30)  # 256 x 384
    auto = Predictor(model, max_whole_pixels=10**6)  # small enough for the base to run whole
    auto(degraded)
    assert auto.last_run["expert"] == [True] and auto.last_run["mode"] == "tiled"
    assert auto.last_run["tile"] <= EXPERT_TILE
    tiles = []
    expert = auto.expert
    auto.expert = lambda part: (tiles.append(tuple(part.shape[-2:])), expert(part))[1]
    auto(degraded)
    assert len(tiles) > 1 and all(max(shape) <= EXPERT_TILE for shape in tiles)
    auto(clean)  # the base U-Net: whole, as before
    assert auto.last_run["expert"] == [False] and auto.last_run["mode"] == "whole"
    chosen = Predictor(model, tile=192, overlap=32)  # a tile the caller chose is kept for the expert too
    chosen(degraded)
    assert chosen.last_run["tile"] == 192 and chosen.last_run["expert"] == [True]


def test_a_whole_photo_the_route_takes_keeps_the_cautious_exposure_head_when_it_does_not_brighten(monkeypatch):
    """A JPEG whose only damage the route finds to be the compression keeps the crop head's curve (here the untrained
    identity), whatever its size; the others of the batch get the photo head's (here wherever it may run)."""
    from anyrestore.archs import tone_curve

    monkeypatch.setattr(tone_curve, "PHOTO_BRIGHTENING", (0.0, 1e-6))
    model = build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True, tone_curve=True,
                        photo_tone_curve=True, photo_min_side=64)
    randomize_parameters(model, seed=3, scale=0.05)
    for p in model.tone_curve.parameters():  # the crop head: the identity curve, as untrained
        torch.nn.init.zeros_(p)
    randomize_parameters(model.photo_tone_curve, seed=5, scale=1.0)
    model.eval()
    degraded = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(6)) * 0.4
    monkeypatch.setattr(type(model), "expert_route", lambda self, x: torch.tensor([True, False]))
    unexposed = model.global_stage.without_exposure()
    with torch.no_grad():
        out = model(degraded)
        kept = unexposed(degraded[:1], model.forward_expert(degraded[:1]))
        bold = model.photo_tone_curve(degraded[:1], kept)
        photo = model.photo_tone_curve(degraded[1:], unexposed(degraded[1:], model.forward_local(degraded[1:])))
        through_predictor = Predictor(model, tile=0)(degraded)
    assert (kept - bold).abs().max() > 1e-3  # the photo head's curve would show
    torch.testing.assert_close(out[:1], kept, atol=1e-4, rtol=0)  # batch of 2 against 1: float rounding
    torch.testing.assert_close(out[1:], photo, atol=1e-4, rtol=0)
    torch.testing.assert_close(through_predictor[:1], kept, atol=1e-4, rtol=0)  # the Predictor hands its route on


def _weights_with_projection(path, **kwargs):
    model = build_model("nafnet-tiny", **kwargs)
    randomize_parameters(model, seed=3, scale=0.05)
    return save_model(model, path)


def test_the_training_script_trains_only_the_expert_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = _weights_with_projection(tmp_path / "projection.safetensors", jpeg_projection=True)
    script = load_script("scripts/train_jpeg_expert.py")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.chelsea()).save(photos / "chelsea.png")
    options = ["--weights", str(weights), "--steps", "4", "--every", "2", "--batch", "2", "--side", "64",
               "--photos", str(photos), "--release", "18"]
    with pytest.raises(SystemExit) as refused:
        script.main([*options, "-o", str(tmp_path / "x.safetensors"), "--side", "60"])
    assert refused.value.code == 2
    whole = tmp_path / "whole.safetensors"
    assert script.main([*options, "-o", str(whole)]) == 0
    assert not whole.with_suffix(".resume.pt").exists()  # the checkpoint goes once the output is written
    before, after = load_model(weights), load_model(whole)
    for key, value in before.state_dict().items():
        assert torch.equal(after.state_dict()[key], value), key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(after.forward_expert(x), after.forward_local(x))  # it learnt something
    with safe_open(whole, "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["arch_kwargs"])["jpeg_expert"] is True
    assert (meta["run"], meta["stage"], meta["release"], meta["stage_steps"]) == (
        "default-jpeg-expert", "jpeg_expert", "18", "4")
    assert meta["previous_sha256"] == before.checkpoint_info["sha256"]
    if not torch.cuda.is_available():  # auto is the CPU here: an explicit --device cpu gives the same weights
        on_cpu = tmp_path / "cpu.safetensors"
        assert script.main([*options, "-o", str(on_cpu), "--device", "cpu"]) == 0
        for key, value in load_model(on_cpu).state_dict().items():
            assert torch.equal(after.state_dict()[key], value), key
    with pytest.raises(SystemExit) as bad_device:
        script.main([*options, "-o", str(tmp_path / "y.safetensors"), "--device", "gpu0"])
    assert bad_device.value.code == 2 and not (tmp_path / "y.safetensors").exists()

    broken = tmp_path / "broken.safetensors"
    calls = {"n": 0}
    real_loss = script.psnr_loss

    def failing_third_step(pred, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_loss(pred, target)
    monkeypatch.setattr(script, "psnr_loss", failing_third_step)
    with pytest.raises(KeyboardInterrupt):
        script.main([*options, "-o", str(broken)])
    monkeypatch.setattr(script, "psnr_loss", real_loss)
    assert broken.with_suffix(".resume.pt").is_file() and not broken.exists()
    with pytest.raises(SystemExit, match=r"made with other options \(lr, steps\)"):
        script.main([*options, "-o", str(broken), "--resume", "--steps", "6", "--lr", "1e-3"])
    assert script.main([*options, "-o", str(broken), "--resume"]) == 0
    resumed = load_model(broken)
    for key, value in after.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

    with pytest.raises(SystemExit, match="already has a JPEG expert"):
        script.main([*options, "-o", str(tmp_path / "again.safetensors"), "--weights", str(whole)])
    plain = _weights_with_projection(tmp_path / "plain.safetensors")
    with pytest.raises(SystemExit, match="has no JPEG projection"):
        script.main([*options, "-o", str(tmp_path / "again.safetensors"), "--weights", str(plain)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        script.main([*options, "-o", str(tmp_path / "fresh.safetensors"), "--resume"])

    deep = tmp_path / "deep.safetensors"
    with pytest.raises(SystemExit, match="encoder_levels must be 0-4"):
        script.main([*options, "-o", str(deep), "--expert-levels", "5"])
    assert script.main([*options, "-o", str(deep), "--expert-levels", "4", "--steps", "2"]) == 0
    deep_model = load_model(deep)  # rebuilt from the recorded arch_kwargs
    assert deep_model.arch_kwargs["jpeg_expert_levels"] == 4
    for key, value in before.state_dict().items():  # the base stays
        assert torch.equal(deep_model.state_dict()[key], value), key
    deepest = [key for key in before.state_dict() if key.startswith("encoders.3.") and key.endswith(".weight")]
    assert deepest and all(not torch.equal(deep_model.state_dict()[f"jpeg_expert.{key}"], before.state_dict()[key])
                           for key in deepest)  # the expert's own copy of the deepest level was trained


def test_restore_cli_says_how_many_images_the_expert_restored(tmp_path, capsys):
    import anyrestore.cli as cli

    weights = save_model(_identity_unet_with_expert(), tmp_path / "expert.safetensors")
    clean, _ = _photo_and_jpeg()
    rgb = (clean.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(rgb).save(photos / "photo.jpg", quality=30)
    Image.fromarray(rgb).save(photos / "lossless.png")
    jpeg_file, png_file = str(photos / "photo.jpg"), str(photos / "lossless.png")
    assert cli.main(["restore", jpeg_file, png_file, "-o", str(tmp_path / "out"), "--model", str(weights)]) == 0
    assert "note: 1 image(s) looked like JPEGs damaged by the compression alone" in capsys.readouterr().out
    assert cli.main(["restore", png_file, "-o", str(tmp_path / "png"), "--model", str(weights)]) == 0
    assert "JPEG expert" not in capsys.readouterr().out


def test_a_window_blurred_before_the_compression_keeps_its_blur_as_the_target(monkeypatch):
    """The same seeded draws with either ``--blur-target``: the JPEG windows are equal, and exactly the windows
    blurred before the compression get other targets: with ``blurred`` they are smoother than the sharp crops."""
    script = load_script("scripts/train_jpeg_expert.py")
    blurred_windows = []
    real_blur = script.gaussian_blur

    def counting_blur(image, sigma):
        blurred_windows.append(sigma)
        return real_blur(image, sigma=sigma)

    monkeypatch.setattr(script, "gaussian_blur", counting_blur)
    copies, weights = [torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).contiguous()], torch.ones(1)
    degraded, blurred = script.batch_of(copies, weights, 64, 40, torch.Generator().manual_seed(5), "blurred")
    calls = len(blurred_windows)
    degraded_sharp, sharp = script.batch_of(copies, weights, 64, 40, torch.Generator().manual_seed(5), "sharp")
    assert torch.equal(degraded, degraded_sharp)
    differs = (blurred - sharp).flatten(1).abs().amax(1) > 0
    assert calls >= 1 and int(differs.sum()) == calls  # one other target per window blurred before the JPEG

    def roughness(windows):
        return (windows[..., 1:] - windows[..., :-1]).abs().mean(dim=(1, 2, 3))

    assert bool((roughness(blurred[differs]) < roughness(sharp[differs])).all())
