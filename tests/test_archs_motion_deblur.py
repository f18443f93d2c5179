"""The whole-image linear motion deblurring stage (anyrestore.archs.motion_deblur), its place in NAFNet before the
unsharp mask, and `scripts/train_global_stage.py motion_deblur`."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from _cli_testutil import load_script
from anyrestore.archs import build_model
from anyrestore.archs.motion_deblur import (BLOCKY, JPEG_ONLY_MIN_SHARE, KEEP_LOGIT, LAMBDAS, MIN_INPUT_DEPTH, MIN_SIDE,
                                            GlobalMotionDeblur, blockiness, dip_depth_at, has_jpeg_table,
                                            filter_mirrored, line_kernels, motion_features, on_jpeg_grid,
                                            wiener_deconvolve, wiener_gain)
from anyrestore.degradations.blur import motion_blur, motion_kernel
from anyrestore.degradations.jpeg import jpeg
from anyrestore.io import read_image
from anyrestore.metrics import psnr

SAMPLE = Path(__file__).resolve().parents[1] / "anyrestore" / "samples" / "chelsea.png"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    image = read_image(SAMPLE)[:3]
    h, w = image.shape[-2:]
    return image[:, (h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2].contiguous()


def _blur(image: torch.Tensor, length: float, angle: float) -> torch.Tensor:
    return (motion_blur(image[None], length=length, angle=angle).clamp(0, 1) * 255).round() / 255


@pytest.mark.parametrize("length, angle", [(15, 30), (9, 100), (23, 160), (11, 0)])
def test_the_cepstrum_finds_the_length_and_direction_of_a_linear_blur(photo, length, angle):
    features = motion_features(_blur(photo, length, angle))
    dx, dy = features[0, :2].double()
    found_angle = math.degrees(math.atan2(-dy, dx)) % 180
    assert abs(math.hypot(dx, dy) - length) < 0.8
    assert min(abs(found_angle - angle), 180 - abs(found_angle - angle)) < 3.0
    assert features[0, 3] > math.log1p(8.0)  # a deep cepstral dip, in robust standard deviations


def test_an_unblurred_photo_shows_no_deep_long_dip(photo):
    blurred = motion_features(_blur(photo, 15, 30))
    sharp = motion_features(photo[None])
    assert sharp[0, 3] < blurred[0, 3] - 1.0


def test_line_kernels_are_the_library_segment_of_the_offset():
    dx, dy = torch.tensor([15 * math.cos(math.radians(30))]), torch.tensor([-15 * math.sin(math.radians(30))])
    kernels = line_kernels(dx, dy)
    length = math.hypot(float(dx.double()), float(dy.double()))
    torch.testing.assert_close(kernels[0], motion_kernel(kernels.shape[-1], length, 30.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(kernels[0], motion_kernel(kernels.shape[-1], 15, 30), atol=1e-3, rtol=0)
    assert kernels.shape[-1] % 2 == 1 and abs(float(kernels.sum()) - 1) < 1e-5


def test_wiener_deconvolution_with_a_delta_and_no_prior_is_the_identity(photo):
    delta = torch.zeros(1, 3, 3)
    delta[0, 1, 1] = 1
    out = wiener_deconvolve(photo[None], delta, torch.zeros(1))
    torch.testing.assert_close(out, photo[None], atol=1e-5, rtol=0)


def test_wiener_deconvolution_with_the_true_kernel_restores_a_motion_blur(photo):
    blurred = _blur(photo, 15, 30)
    kernel = motion_kernel(17, 15, 30)[None]
    restored = wiener_deconvolve(blurred, kernel, torch.tensor([0.03])).clamp(0, 1)
    assert psnr(restored[0], photo) > psnr(blurred[0], photo) + 3.0


def test_the_untrained_head_blends_about_two_percent_of_each_candidate(photo):
    head = GlobalMotionDeblur()
    shares, dx, dy = head.from_features(motion_features(photo[None]))
    expected = 1 / (math.exp(KEEP_LOGIT) + len(LAMBDAS))
    torch.testing.assert_close(shares, torch.full((1, len(LAMBDAS)), expected))


def test_blend_is_the_weighted_sum_of_the_candidates_and_the_image():
    restored = torch.rand(2, 3, 8, 8)
    candidates = torch.rand(2, 3, 3, 8, 8)
    shares = torch.tensor([[0.2, 0.3, 0.1], [0.0, 0.0, 0.0]])
    out = GlobalMotionDeblur.blend(restored, candidates, shares)
    torch.testing.assert_close(out[0], 0.4 * restored[0] + 0.2 * candidates[0, 0] + 0.3 * candidates[0, 1]
                               + 0.1 * candidates[0, 2])
    torch.testing.assert_close(out[1], restored[1])


def test_small_images_and_negligible_shares_pass_through_unchanged(photo):
    head = GlobalMotionDeblur()
    tiny = torch.rand(1, 3, MIN_SIDE - 1, 200)
    assert head(tiny, tiny) is tiny
    head.mlp[-1].bias.data[0] = 20.0  # the head is sure there is no blur
    assert head(photo[None], photo[None]) is not None
    assert torch.equal(head(photo[None], photo[None]), photo[None])  # SKIP_BELOW: no deconvolution at all


def test_a_trained_share_deblurs_and_the_gradient_reaches_the_head(photo):
    blurred = _blur(photo, 15, 30)
    head = GlobalMotionDeblur()
    with torch.no_grad():
        head.mlp[-1].bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -10.0]))  # all of the lambda=0.03 candidate
    out = head(blurred, blurred)
    assert psnr(out[0].clamp(0, 1), photo) > psnr(blurred[0], photo) + 2.5
    head.zero_grad()
    features = motion_features(blurred)
    shares, dx, dy = head.from_features(features)
    head.blend(blurred, head.candidates(blurred, dx, dy), shares).mean().backward()
    assert head.mlp[-1].bias.grad.abs().sum() > 0


def test_blockiness_finds_the_jpeg_grid_at_any_phase(photo):
    compressed = jpeg(photo[None], quality=30)
    assert float(blockiness(photo[None])) < 0.1 < BLOCKY < float(blockiness(compressed))
    assert float(blockiness(compressed[..., 3:, 5:])) > BLOCKY  # a crop that does not start on a block edge


def test_a_dip_on_the_jpeg_lattice_counts_only_in_a_jpeg_input(photo, monkeypatch):
    """Blocky (q30) or not (q75, whose blocks only its quantisation table shows): both are JPEGs."""
    blocky, smooth, plain = jpeg(photo[None], quality=30), jpeg(photo[None], quality=75), photo[None]
    assert float(blockiness(smooth)) < BLOCKY
    assert has_jpeg_table(smooth).tolist() == [True] and has_jpeg_table(plain).tolist() == [False]
    offsets = torch.tensor([[-24.0, -9.2], [0.1, -23.7], [12.2, -7.0], [-24.6, 3.0], [4.0, 0.0]], dtype=torch.float64)
    on_lattice = [True, True, False, False, False]
    for image, expected in ((blocky, on_lattice), (smooth, on_lattice), (plain, [False] * 5)):
        found = [bool(on_jpeg_grid(dx[None], dy[None], image)) for dx, dy in offsets]
        assert found == expected
    batch = torch.cat([plain, smooth, blocky])  # the table is looked for only where blockiness did not decide
    assert on_jpeg_grid(offsets[:1, 0].expand(3), offsets[:1, 1].expand(3), batch).tolist() == [False, True, True]
    import anyrestore.archs.motion_deblur as stage_module
    searched = []
    real_search = stage_module.has_jpeg_table

    def counted_search(images):
        searched.append(len(images))
        return real_search(images)
    monkeypatch.setattr(stage_module, "has_jpeg_table", counted_search)
    known = torch.tensor([False, True, False])  # a route that already found the smooth one's table
    assert on_jpeg_grid(offsets[:1, 0].expand(3), offsets[:1, 1].expand(3), batch, known).tolist() == [False, True,
                                                                                                       True]
    assert searched == [1]  # only the plain image was searched


@pytest.mark.parametrize("quality, kept", [(None, False), (30, True)])
def test_the_stage_leaves_a_blocky_input_alone_when_its_dip_is_on_the_jpeg_lattice(photo, quality, kept):
    """A vertical 24-px blur puts the dip at (0, -24), on the lattice: deconvolved when the input is not blocky,
    left as it is when it is a JPEG (where the block grid puts dips there too)."""
    blurred = _blur(photo, 24, 90)
    degraded = blurred if quality is None else jpeg(blurred, quality=quality)
    head = GlobalMotionDeblur()
    with torch.no_grad():
        head.mlp[-1].bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -10.0]))  # the head is sure: deconvolve
    out = head(degraded, degraded)
    assert torch.equal(out, degraded) == kept


@pytest.mark.parametrize("share, jpeg_only, deconvolved", [(0.3, False, True), (0.3, True, False),
                                                            (0.9, True, True), (0.3, None, True)])
def test_an_image_the_jpeg_route_takes_is_deconvolved_only_when_the_head_is_sure(photo, share, jpeg_only,
                                                                                deconvolved):
    blurred = _blur(photo, 15, 30)  # its dip is off the JPEG lattice and deep in the input
    head = GlobalMotionDeblur()
    with torch.no_grad():  # all of the candidate share on lambda=0.03, the rest on keeping the image
        head.mlp[-1].bias.copy_(torch.tensor([0.0, -30.0, math.log(share / (1 - share)), -30.0]))
    route = None if jpeg_only is None else torch.tensor([jpeg_only])
    with torch.no_grad():
        shares, _, _ = head.estimate(blurred, blurred, route)
    assert float(shares.sum()) == (pytest.approx(share, abs=1e-6) if deconvolved else 0.0)
    assert (share >= JPEG_ONLY_MIN_SHARE) == (share == 0.9)


def test_the_blur_dip_shows_in_the_blurred_input_and_not_in_a_sharp_one(photo):
    blurred = _blur(photo, 15, 30)
    dx, dy = motion_features(blurred)[0, :2]

    def depth(image, sx, sy):
        return float(dip_depth_at(image, sx[None], sy[None])[0])

    assert depth(blurred, dx, dy) > 2 * MIN_INPUT_DEPTH
    assert depth(blurred, -dx, -dy) == pytest.approx(depth(blurred, dx, dy))  # the cepstrum is even
    assert depth(photo[None], dx, dy) < MIN_INPUT_DEPTH


@pytest.mark.parametrize("input_blurred", [True, False])
def test_the_stage_deconvolves_only_a_blur_the_input_shows(photo, input_blurred):
    """The restored image has a 15-px blur; the input must show it too, else the dip is the restorer's own (the
    JPEG expert left one in a patch of sky) and the image is left as it is."""
    blurred = _blur(photo, 15, 30)
    degraded = blurred if input_blurred else photo[None]
    head = GlobalMotionDeblur()
    with torch.no_grad():
        head.mlp[-1].bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -10.0]))  # the head is sure: deconvolve
    shares = head.estimate(degraded, blurred)[0]
    assert (float(shares.detach().sum()) > 0.9) == input_blurred
    assert torch.equal(head(degraded, blurred), blurred) != input_blurred


def test_nafnet_runs_the_motion_stage_first_under_its_own_keys(photo):
    model = build_model("nafnet-tiny", motion_deblur=True, sharpen=True, tone_curve=True)
    keys = [k for k in model.state_dict() if k.startswith("motion_deblur.")]
    assert sorted(k for k in keys if not k.startswith("motion_deblur.mlp.")) == [
        "motion_deblur.feature_scale", "motion_deblur.feature_shift"]
    assert sum(model.state_dict()[k].numel() for k in keys) == 6 * 32 + 32 + 32 * 32 + 32 + 32 * 4 + 4 + 2 * 6
    stages = list(model.global_stage.stages)
    assert stages[0] is model.motion_deblur and stages[1] is model.sharpen and stages[2] is model.tone_curve
    plain = build_model("nafnet-tiny")
    assert not any(k.startswith("motion_deblur.") for k in plain.state_dict())


def test_pixel_line_kernel_is_a_normalised_line_of_the_given_length():
    script = load_script("scripts/train_global_stage.py")
    kernel = script.pixel_line_kernel(9.0, 0.0)
    assert kernel.shape == (11, 11) and abs(float(kernel.sum()) - 1) < 1e-6
    assert torch.count_nonzero(kernel) == 9 and torch.count_nonzero(kernel[5]) == 9
    diagonal = script.pixel_line_kernel(12.0, 45.0)  # counter-clockwise with y up: the anti-diagonal
    rows, cols = torch.nonzero(diagonal, as_tuple=True)
    assert torch.all(rows + cols == diagonal.shape[0] - 1) and len(rows) == 9  # 12 px at 45° span 8.5 px per axis


def test_motion_stage_training_adds_only_the_head_and_learns_to_choose(tmp_path, capsys, photo):
    from anyrestore.checkpoints import load_model, save_model
    from anyrestore.io import write_image

    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "cat.png", photo)
    write_image(photos / "cat_flipped.png", photo.flip(-1))
    torch.manual_seed(0)
    previous = build_model("nafnet-tiny", sharpen=True)
    weights = save_model(previous, tmp_path / "sharpened.safetensors")
    script = load_script("scripts/train_global_stage.py")
    script.shipped_photo_paths = lambda: []
    script.MOTION_CROP = 128
    out = tmp_path / "deblurred.safetensors"
    cache = tmp_path / "set.pt"
    args = ["motion_deblur", "--weights", str(weights), "-o", str(out), "--photos", str(photos), "--samples", "12",
            "--steps", "12", "--choice-steps", "6", "--batch", "4", "--cache", str(cache)]
    assert script.main(args) == 0
    assert "motion-blurred gain dB" in capsys.readouterr().out
    model = load_model(out)
    assert model.motion_deblur is not None and model.sharpen is not None
    for key, value in previous.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    head = model.motion_deblur
    assert torch.all(head.feature_scale != 1) and torch.all(head.feature_shift != 0)  # standardised inputs
    assert head.mlp[-1].weight.abs().sum() > 0
    # the cache holds the fixed candidates and the later stages' statistics; a rerun from it gives the same head
    data = torch.load(cache, weights_only=True)
    assert "candidates" in data and '"through": ["GlobalSharpen"]' in data["key"]
    assert len(data["later_features"]) == 1 and data["later_features"][0].shape == (12, 11)
    idx = torch.arange(3)
    expected = model.sharpen.apply(head.blend(data["restored"][idx], data["candidates"][idx],
                                              head.from_features(data["features"][idx])[0]),
                                   *model.sharpen.from_features(data["later_features"][0][idx]))
    later = script.later_stages(model, "motion_deblur")
    assert later == [model.sharpen]
    torch.testing.assert_close(script.stage_output(head, data, idx, later), expected)
    again = tmp_path / "again.safetensors"
    assert script.main(args[:4] + [str(again)] + args[5:]) == 0
    assert "training set from" in capsys.readouterr().out
    for key, value in load_model(again).state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_best_choices_pick_the_option_nearest_the_clean_image():
    script = load_script("scripts/train_global_stage.py")
    clean = torch.full((2, 3, 4, 4), 0.5)
    restored = clean + torch.tensor([0.1, 0.0]).view(2, 1, 1, 1)
    candidates = torch.stack([clean + 0.2, clean + 0.01, clean + 0.3], dim=1)
    candidates[1] = clean[1, None] + 0.05
    best, weight = script.best_choices({"clean": clean, "restored": restored, "candidates": candidates})
    assert best.tolist() == [2, 0]  # option 2 is candidate 1; the second image is best kept
    assert weight[0] == 3.0  # 40 dB vs 20 dB, clamped
    assert 0.05 <= weight[1] <= 3.0


def test_apply_is_the_blend_of_the_candidates_as_one_filter(photo):
    blurred = torch.stack([_blur(photo, 15, 30)[0], _blur(photo, 9, 120)[0]])
    head = GlobalMotionDeblur()
    features = motion_features(blurred)
    _, dx, dy = head.from_features(features)
    shares = torch.tensor([[0.1, 0.5, 0.2], [0.0, 0.3, 0.0]])
    reference = head.blend(blurred, head.candidates(blurred, dx, dy), shares)
    torch.testing.assert_close(head.apply(blurred, shares, dx, dy), reference, atol=2e-5, rtol=0)


def test_motion_training_negatives_draw_every_jpeg_chroma_subsampling():
    """A head that saw only 4:2:0 JPEG took a 4:2:2 photo of slanted grass for motion (-3.8 dB)."""
    script = load_script("scripts/train_global_stage.py")
    calls = []
    real_jpeg = script.jpeg
    script.jpeg = lambda image, quality, subsampling: (calls.append((quality, subsampling))
                                                      or real_jpeg(image, quality=quality, subsampling=subsampling))
    clean = torch.rand(60, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    degraded, moved = script.motion_or_mix(clean, 0.4, 0)
    assert {s for _, s in calls} == set(script.JPEG_SUBSAMPLINGS) == {"4:2:0", "4:2:2", "4:4:4"}
    assert all(15 <= q < 95 for q, _ in calls)
    assert 0 < int(moved.sum()) < 60 and torch.equal(degraded, (degraded * 255).round() / 255)


def test_wiener_deconvolve_in_chunks_matches_each_image_alone():
    from anyrestore.archs.motion_deblur import WIENER_CHUNK

    n = WIENER_CHUNK + 3  # two chunks, the second partial
    images = torch.rand(n, 3, 24, 28, generator=torch.Generator().manual_seed(0))
    kernels = torch.stack([motion_kernel(9, 3.0 + i / 2, 15.0 * i) for i in range(n)])
    lam = torch.linspace(1e-3, 1e-1, n)
    together = wiener_deconvolve(images, kernels, lam)
    alone = torch.cat([wiener_deconvolve(images[i:i + 1], kernels[i:i + 1], lam[i:i + 1]) for i in range(n)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_training_through_a_wiener_sharpen_matches_inference(photo):
    """The trainer's view of the motion stage followed by a Wiener sharpen (which yields to the motion share) is
    what the model's whole-image stages compute."""
    script = load_script("scripts/train_global_stage.py")
    model = build_model("nafnet-tiny", motion_deblur=True, sharpen=True, sharpen_mode="wiener")
    with torch.no_grad():
        model.motion_deblur.mlp[-1].bias.copy_(torch.tensor([0.0, 1.0, 1.0, 1.0]))  # about 90 % blended in
        model.sharpen.mlp[-1].bias[0] = 8.0  # the sharpen share alone would be about 0.98
    degraded = torch.stack([_blur(photo, 15, 30)[0], _blur(photo.flip(-1), 11, 100)[0]])
    restored = degraded.clamp(0, 1)
    head = model.motion_deblur
    features = motion_features(restored)
    data = {"restored": restored, "features": features,
            "candidates": head.candidates(restored, features[:, 0], features[:, 1]),
            "later_features": [model.sharpen.features(degraded)]}
    later = script.later_stages(model, "motion_deblur")
    trained = script.stage_output(head, data, torch.arange(2), later)
    with torch.no_grad():
        inferred = model.global_stage(degraded, restored)
    torch.testing.assert_close(trained, inferred, rtol=0, atol=1e-4)
    shares = head.from_features(features)[0].sum(dim=1)
    assert (shares > 0.85).all()
    sharpen_share = model.sharpen.yield_to_motion(model.sharpen.from_features(data["later_features"][0]), shares)[0]
    assert (sharpen_share < 0.15).all()


def _ffts_of_the_mirrored_image(image, kernels, transfers):
    """filter_mirrored's differentiable route (it takes it for an input that needs a gradient)."""
    return filter_mirrored(image.clone().requires_grad_(True), kernels, transfers).detach()


@pytest.mark.parametrize("size", [(70, 90), (131, 64)])
def test_the_cosine_transform_route_is_the_fft_route(size):
    """At inference, point-symmetric kernels (Gaussians, lines) are filtered with DCT/DST-II of the unmirrored image;
    the result is the FFT route's, for several transfer functions at once."""
    from anyrestore.archs.global_sharpen import gaussian_kernels

    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, *size, generator=g)
    lam = torch.tensor([1e-3, 3e-2])
    gaussians = gaussian_kernels(torch.tensor([0.7, 2.6]))
    lines = line_kernels(torch.tensor([9.0, -3.0]), torch.tensor([-4.0, 12.5]))
    for kernels in (gaussians, lines):
        def transfers(otf, gradients):
            return torch.stack([wiener_gain(otf, lam, gradients), 0.3 + 0.5 * wiener_gain(otf, 10 * lam, gradients)], 1)

        with torch.inference_mode():
            fast = filter_mirrored(images, kernels, transfers)
        torch.testing.assert_close(fast, _ffts_of_the_mirrored_image(images, kernels, transfers), rtol=0, atol=1e-5)


def test_both_routes_convolve_like_a_spatial_convolution_inside_the_image():
    """Transfer = the kernel's spectrum is a plain convolution: away from the borders it equals conv2d with the
    flipped kernel, for a point-symmetric kernel (cosine route) and a lopsided one (FFT route)."""
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 48, 56, generator=g)
    symmetric = line_kernels(torch.tensor([5.0]), torch.tensor([2.0]))
    lopsided = torch.rand(1, 7, 7, generator=g)
    lopsided /= lopsided.sum()
    for kernels in (symmetric, lopsided):
        k = kernels.shape[-1]
        with torch.inference_mode():
            out = filter_mirrored(image, kernels, lambda otf, gradients: otf[:, None])[:, 0]
        weight = kernels.flip(-1, -2).float()[:, None].expand(3, 1, k, k)
        reference = torch.nn.functional.conv2d(image, weight, groups=3)  # valid part only
        r = k // 2
        torch.testing.assert_close(out[..., r:-r, r:-r], reference, rtol=0, atol=1e-5)


def test_negligible_summed_shares_skip_the_deconvolution_only_at_inference(photo):
    blurred = _blur(photo, 15, 30)
    head = GlobalMotionDeblur()
    _, dx, dy = head.from_features(motion_features(blurred))
    small = torch.full((1, len(LAMBDAS)), 0.009 / len(LAMBDAS))  # summed 0.009 < MOTION_SKIP_BELOW
    assert torch.equal(head.apply(blurred, small, dx, dy), blurred)
    assert not torch.equal(head.apply(blurred, small.clone().requires_grad_(True), dx, dy), blurred)
    larger = torch.full((1, len(LAMBDAS)), 0.011 / len(LAMBDAS))
    assert not torch.equal(head.apply(blurred, larger, dx, dy), blurred)
