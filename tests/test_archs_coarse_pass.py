"""The coarse haze pass (anyrestore.archs.coarse_pass): a lifted veil is carried to full resolution, nothing else."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from _cli_testutil import switch_on_weightless_stage
from anyrestore.archs import build_model
from anyrestore.archs.coarse_pass import CoarsePass
from anyrestore.checkpoints import load_model, save_model
from anyrestore.inference import Predictor
from anyrestore.metrics import psnr

AIRLIGHT = 0.9


def _scene(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random colour image (1,3,H,W) with fine texture on top, in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, h // 16, w // 16, generator=g), size=(h, w), mode="bicubic",
                           align_corners=False)
    fine = 0.1 * (torch.rand(1, 3, h, w, generator=g) - 0.5)
    return (0.1 + 0.8 * coarse + fine).clamp(0.05, 0.95)


def _transmission(h: int, w: int) -> torch.Tensor:
    """Top far, bottom near: t from 0.25 to 1 down the frame, (1,1,H,W)."""
    return torch.linspace(0.25, 1.0, h).view(1, 1, h, 1).expand(1, 1, h, w)


def _haze(clean: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return clean * t + AIRLIGHT * (1 - t)


def _dehazing_oracle(t_full: torch.Tensor):
    """A restorer that undoes the haze exactly at whatever (smaller) size it is given."""
    def restore(x: torch.Tensor) -> torch.Tensor:
        t = F.interpolate(t_full, size=x.shape[-2:], mode="area")
        return (x - AIRLIGHT * (1 - t)) / t
    return restore


def test_coarse_size_keeps_the_aspect_and_skips_images_already_at_the_unet_scale():
    stage = CoarsePass(side=192, min_scale=2.0)
    assert stage.coarse_size(383, 1000) is None
    assert stage.coarse_size(384, 600) == (192, 300)
    assert stage.coarse_size(1440, 720) == (384, 192)
    x = _scene(200, 300)
    calls = []
    assert torch.equal(stage(x, x, lambda y: calls.append(y) or y), x) and not calls  # no coarse pass run


def test_a_lifted_veil_is_carried_to_full_resolution_with_the_fine_detail():
    clean = _scene(400, 640)
    t = _transmission(400, 640)
    hazy = _haze(clean, t)
    out = CoarsePass()(hazy, hazy, _dehazing_oracle(t))  # the local restorer left the haze in place
    assert psnr(hazy[0], clean[0]) < 15
    assert psnr(out[0], clean[0]) > psnr(hazy[0], clean[0]) + 12
    # the fine texture, which the coarse pass cannot see, survives: the residual holds little of it
    detail = clean - F.avg_pool2d(F.pad(clean, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    out_detail = out - F.avg_pool2d(F.pad(out, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    kept = (out_detail * detail).sum() / (detail * detail).sum()
    assert kept > 0.5


def test_fits_that_imply_a_dark_airlight_are_left_alone():
    """Low light, rain and the like: the coarse pass raises contrast around a dark level, not a bright veil."""
    x = _scene(400, 600, seed=1)
    stage = CoarsePass()
    brighten = lambda y: (1.3 * y - 0.05).clamp(0, 1)  # noqa: E731  implied airlight 0.05 / 0.3 = 0.17
    assert torch.equal(stage(x, x, brighten), x)
    same = lambda y: y  # noqa: E731
    assert torch.equal(stage(x, x, same), x)  # nothing to carry over
    gain, offset = stage.fit(F.interpolate(x, size=(192, 288), mode="area"),
                             brighten(F.interpolate(x, size=(192, 288), mode="area")))
    assert gain.min() >= 1.0 and offset.max() <= 0.0
    assert not stage.veil_lifted(gain, offset).any()


def test_each_image_of_a_batch_is_gated_on_its_own():
    clean = torch.cat([_scene(400, 640, seed=2), _scene(400, 640, seed=3)])
    t = _transmission(400, 640)
    batch = torch.cat([_haze(clean[:1], t), clean[1:]])
    oracle = _dehazing_oracle(t)
    restorer = lambda y: torch.cat([oracle(y[:1]), y[1:]])  # noqa: E731  the second image needs nothing
    out = CoarsePass()(batch, batch, restorer)
    assert torch.equal(out[1], batch[1])
    assert psnr(out[0], clean[0]) > psnr(batch[0], clean[0]) + 12


def test_the_stage_comes_first_and_runs_the_unet_on_the_downscaled_whole_image(tmp_path):
    model = build_model("nafnet-tiny", coarse_pass=True, tone_curve=True).eval()
    assert [type(s).__name__ for s in model.global_stage.stages] == ["CoarsePass", "GlobalToneCurve"]
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert loaded.arch_kwargs["coarse_pass"] is True
    seen = []
    local = loaded.forward_local
    loaded.forward_local = lambda x: seen.append(tuple(x.shape[-2:])) or local(x)
    x = _scene(400, 520, seed=4)[0]
    options = {"device": "cpu", "tile": 128, "overlap": 16, "fast": False, "channels_last": False}
    with torch.inference_mode():
        Predictor(loaded, **options)(x)
    *tiles, coarse = seen
    assert coarse == (192, 250) and tiles and all(max(size) <= 128 for size in tiles)  # the tiles, then the pass


def test_the_training_script_switches_the_stage_on_without_changing_a_tensor(tmp_path):
    script, _, out, _ = switch_on_weightless_stage(tmp_path, "coarse_pass")
    with pytest.raises(SystemExit, match="already has a coarse_pass stage"):
        script.main(["coarse_pass", "--weights", str(out), "-o", str(tmp_path / "again.safetensors")])


def _smooth_scene(h: int, w: int, seed: int = 5) -> torch.Tensor:
    """Bright, low-contrast and smooth (out-of-focus background), (1,3,H,W)."""
    g = torch.Generator().manual_seed(seed)
    blobs = F.interpolate(torch.rand(1, 3, h // 64, w // 64, generator=g), size=(h, w), mode="bicubic",
                          align_corners=False)
    return (0.55 + 0.2 * blobs).clamp(0.0, 1.0)


def _false_dehaze(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """What a tile that took a smooth region for haze does: ``(x - A(1 - t)) / t`` with t = 0.5 on one square,
    feathered into the rest of the frame."""
    weight = torch.zeros_like(x[:, :1])
    weight[..., top:top + size, left:left + size] = 1.0
    weight = F.avg_pool2d(F.pad(weight, (16, 16, 16, 16), mode="replicate"), 33, stride=1)
    dehazed = ((x - AIRLIGHT * 0.5) / 0.5).clamp(0, 1)
    return x + weight * (dehazed - x)


def test_a_veil_the_tiles_removed_from_a_smooth_region_is_put_back():
    x = _smooth_scene(480, 768)
    restored = _false_dehaze(x, 200, 400, 160)
    blotch = (0, slice(None), slice(200, 360), slice(400, 560))
    assert psnr(restored[blotch], x[blotch]) < 15
    same = lambda y: y  # noqa: E731  the coarse restoration of the whole image finds nothing to dehaze
    out = CoarsePass()(x, restored, same)
    assert psnr(out[blotch], x[blotch]) > psnr(restored[blotch], x[blotch]) + 10
    far = (slice(None), slice(None), slice(0, 120), slice(0, 200))  # away from the blotch nothing moves
    assert torch.allclose(out[far], restored[far], atol=1e-6)
    assert torch.equal(CoarsePass(restore_veil=False)(x, restored, same), restored)


def test_removing_fine_bright_streaks_is_not_taken_for_a_false_dehaze():
    """Rain removal also darkens a region against a coarse pass that keeps the streaks' veil, but the input's own
    fine detail explains the change."""
    clean = _smooth_scene(480, 768, seed=6)
    g = torch.Generator().manual_seed(7)
    streaks = (torch.rand(1, 1, 480, 768, generator=g) < 0.08).float()
    streaks = F.conv2d(streaks, torch.ones(1, 1, 9, 1) / 3, padding=(4, 0)).clamp(0, 1)  # short vertical lines
    rainy = (clean + 0.4 * streaks).clamp(0, 1)
    same = lambda y: y  # noqa: E731  the coarse pass sees the streaks as a veil and keeps it
    out = CoarsePass()(rainy, clean, same)
    assert torch.equal(out, clean)
