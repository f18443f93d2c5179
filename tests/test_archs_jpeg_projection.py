"""The JPEG projection stage (anyrestore.archs.jpeg_projection): blind table estimation, projection, gate."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from _cli_testutil import switch_on_weightless_stage
from anyrestore.archs import build_model
from anyrestore.archs.jpeg_projection import (JpegProjection, block_dct, block_idct, estimate_luma_table,
                                              ijg_luma_table, luma_levels, matching_ijg_qualities)
from anyrestore.degradations.blur import gaussian_blur
from anyrestore.degradations.jpeg import jpeg_uint8
from anyrestore.degradations.noise import gaussian_noise


def _photo() -> torch.Tensor:
    """A 256×384 natural photo (scikit-image's astronaut), (3,H,W) in [0,1] on 8-bit levels."""
    rgb = skdata.astronaut()[128:384, 64:448]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).double() / 255.0


def _to_u8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(jpeg_uint8(_to_u8(img), quality))).permute(2, 0, 1).double() / 255.0


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 95])
def test_ijg_table_matches_the_one_pillow_writes(quality):
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()[:64, :64]).save(buffer, "JPEG", quality=quality)
    written = Image.open(io.BytesIO(buffer.getvalue())).quantization[0]  # luma, row-major
    assert ijg_luma_table(quality).flatten().tolist() == list(written)
    with pytest.raises(ValueError, match="quality must be in"):
        ijg_luma_table(0)


def test_block_dct_is_orthonormal_and_inverts():
    y = torch.rand(24, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 255 - 128
    coef = block_dct(y)
    assert coef.shape == (3, 5, 8, 8)
    assert torch.allclose(block_idct(coef), y)
    assert torch.allclose(coef.pow(2).sum(), y.pow(2).sum())  # energy kept: the steps are in level units
    flat = block_dct(torch.full((8, 8), 10.0, dtype=torch.float64))
    assert flat[0, 0, 0, 0].item() == pytest.approx(80.0) and flat.flatten()[1:].abs().max() < 1e-9


@pytest.mark.parametrize("quality", [30, 50, 80])
def test_estimates_the_table_of_an_opencv_jpeg(quality):
    degraded = _jpeg(_photo(), quality)
    table = estimate_luma_table(block_dct(luma_levels(degraded)))
    known = table > 0
    assert int(known.sum()) >= 10
    assert (table[known] - ijg_luma_table(quality)[known]).abs().max() <= 1
    assert set(matching_ijg_qualities(table)) & {quality - 1, quality, quality + 1}  # neighbours share most steps
    used = JpegProjection().table_for(degraded)  # from the first 15 frequencies: never narrower than the truth
    assert bool((used >= ijg_luma_table(quality)).all()) and bool((used <= ijg_luma_table(quality) + 2).all())


def test_no_table_without_an_aligned_lattice():
    photo = _photo()
    stage = JpegProjection()
    assert stage.table_for(photo) is None  # never compressed
    noisy = (photo + gaussian_noise(photo[None], sigma=10.0, generator=torch.Generator().manual_seed(1))[0] - photo)
    assert stage.table_for((noisy.clamp(0, 1) * 255).round() / 255) is None
    shifted = _jpeg(photo, 30)[:, 4:, 3:]  # re-cropped after compression: the 8×8 grid no longer starts at 0
    assert stage.table_for(shifted) is None


def test_projection_lands_in_the_intervals_and_keeps_colour():
    clean = _photo()
    degraded = _jpeg(clean, 30)
    blurred = torch.nn.functional.avg_pool2d(degraded[None], 5, stride=1, padding=2, count_include_pad=False)[0]
    table = ijg_luma_table(30).double()
    out = JpegProjection().project(degraded, blurred, table, gated=False)
    c_in, c_out = block_dct(luma_levels(degraded)), block_dct(luma_levels(out))
    centre = torch.round(c_in / table) * table
    inside = ((c_out - centre).abs() <= table / 2 + 1e-6).all(-1).all(-1)
    clipped = ((out <= 0) | (out >= 1)).any(0)  # the final clamp to [0, 1] may push a block out again
    h, w = clipped.shape[0] // 8 * 8, clipped.shape[1] // 8 * 8
    clipped = clipped[:h, :w].reshape(h // 8, 8, w // 8, 8).any(3).any(1)
    assert bool(inside[~clipped].all())
    assert clipped.double().mean() < 0.5  # the white suit clips
    # only the luma moved: the change is the same in R, G and B wherever nothing was clipped
    change = out - blurred
    unclipped = ((out > 0) & (out < 1)).all(0)
    assert torch.allclose(change[0][unclipped], change[1][unclipped]) and torch.allclose(change[0][unclipped],
                                                                                         change[2][unclipped])
    # the truth is in the set, so each coefficient moved towards it: the luma error shrinks
    c_clean, c_blur = block_dct(luma_levels(clean)), block_dct(luma_levels(blurred))
    assert (c_out - c_clean).pow(2).sum() < 0.8 * (c_blur - c_clean).pow(2).sum()


def test_stage_restores_texture_the_restorer_wiped():
    clean = _photo()
    degraded = _jpeg(clean, 30)
    wiped = torch.nn.functional.avg_pool2d(degraded[None], 3, stride=1, padding=1, count_include_pad=False)
    out = JpegProjection()(degraded[None], wiped)

    def error(x):
        return (x[0] - clean).pow(2).mean().item()
    assert error(out) < error(wiped)


def test_gate_refuses_noise_kept_by_jpeg_and_moved_block_means():
    clean = _photo()
    stage = JpegProjection()
    noisy = clean + gaussian_noise(clean[None], sigma=15.0, generator=torch.Generator().manual_seed(2))[0] - clean
    noisy_jpeg = _jpeg(noisy.clamp(0, 1), 50)
    table = stage.table_for(noisy_jpeg)
    assert table is not None  # still a JPEG, but its intervals hold the noise
    denoised = clean[None].clone()
    stats = stage.gate_statistics(block_dct(luma_levels(noisy_jpeg)), block_dct(luma_levels(clean)), table)
    assert stats["flat_blocks"] < stage.min_flat_blocks
    assert torch.equal(stage(noisy_jpeg[None], denoised), denoised)
    # a dark JPEG brightened by the restorer: every block mean left its interval
    dark = _jpeg(clean * 0.4, 30)
    brightened = (dark * 2.5).clamp(0, 1)[None]
    stats = stage.gate_statistics(block_dct(luma_levels(dark)), block_dct(luma_levels(brightened[0])),
                                  stage.table_for(dark))
    assert stats["moved_dc"] > stage.max_moved_dc
    assert torch.equal(stage(dark[None], brightened), brightened)
    # and a clean JPEG passes all three
    degraded = _jpeg(clean, 30)
    stats = stage.gate_statistics(block_dct(luma_levels(degraded)), block_dct(luma_levels(clean)),
                                  stage.table_for(degraded))
    assert stats["flat_blocks"] >= stage.min_flat_blocks
    assert stats["moved_dc"] <= stage.max_moved_dc and stats["moved_ac"] <= stage.max_moved_ac


def test_a_smooth_small_jpeg_is_named_by_fewer_standard_steps():
    """A 128² patch blurred at σ6 and saved at q30 leaves only five of the first 15 frequencies measurable: they
    match IJG q30 exactly, which names the whole table; six are still needed for a table that is no IJG one."""
    smooth = gaussian_blur(_photo()[None].float(), sigma=6.0)[0].double()[:, :128, :128]
    degraded = _jpeg(smooth, 30)
    assert int((estimate_luma_table(block_dct(luma_levels(degraded)), frequencies=15) > 0).sum()) == 5
    assert torch.equal(JpegProjection().table_for(degraded), ijg_luma_table(30))
    assert JpegProjection(min_known_standard=6).table_for(degraded) is None
    assert JpegProjection().table_for((smooth * 255).round() / 255) is None  # the same patch never compressed


def test_small_or_grey_inputs_pass_through():
    stage = JpegProjection()
    small = torch.rand(1, 3, 40, 200)
    assert stage(small, small * 0.5) is not None and torch.equal(stage(small, small * 0.5), small * 0.5)
    grey = torch.rand(1, 1, 96, 96)
    assert torch.equal(stage(grey, grey * 0.5), grey * 0.5)


def test_nafnet_stage_has_no_weights_and_comes_first():
    plain = build_model("nafnet-tiny").eval()
    model = build_model("nafnet-tiny", jpeg_projection=True, coarse_pass=True, tone_curve=True).eval()
    assert isinstance(model.jpeg_projection, JpegProjection) and plain.jpeg_projection is None
    assert set(model.state_dict()) == set(build_model("nafnet-tiny", coarse_pass=True, tone_curve=True).state_dict())
    stages = model.global_stage.stages
    assert [type(s).__name__ for s in stages] == ["JpegProjection", "CoarsePass", "GlobalToneCurve"]
    assert build_model("nafnet-default").jpeg_projection is not None  # the shipped preset turns it on


def test_the_training_script_switches_it_on_without_changing_a_tensor(tmp_path):
    script, weights, out, meta = switch_on_weightless_stage(tmp_path, "jpeg_projection", "--release", "15")
    assert meta["run"] == "default-jpeg-projection" and meta["stage"] == "jpeg_projection"
    assert meta["release"] == "15"
    refused_out = tmp_path / "refused.safetensors"
    with pytest.raises(SystemExit) as refused:
        script.main(["jpeg_projection", "--weights", str(weights), "-o", str(refused_out), "--release", "0"])
    assert refused.value.code == 2 and not refused_out.exists()
    with pytest.raises(SystemExit, match="already has a jpeg_projection stage"):
        script.main(["jpeg_projection", "--weights", str(out), "-o", str(tmp_path / "again.safetensors")])


def test_the_default_gate_passes_a_dark_crop_that_moves_62_percent_and_refuses_noise_removal():
    """Session 32's gate: the held-out dark crop at q30 4:2:2 moves 62.5 % of its AC coefficients under the
    twenty-first release's U-Net and must still pass; removing noise that JPEG kept moves 70-95 % and must not."""
    gate = JpegProjection()
    stats = {"flat_blocks": 0.025, "moved_dc": 0.323, "moved_ac": 0.625}
    assert gate.passes(stats)
    assert not gate.passes({**stats, "moved_ac": 0.70})
    assert not gate.passes({**stats, "moved_dc": 0.70})
    assert not gate.passes({**stats, "flat_blocks": 0.01})
