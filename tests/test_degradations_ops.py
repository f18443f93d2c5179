"""Numerical properties of the degradation ops (noise statistics, kernels, JPEG/haze/low-light formulas)."""
import math

import cv2
import numpy as np
import pytest
import torch

from anyrestore.degradations import blur, jpeg, light, mosaic, noise, weather


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def flat(value, size=256, batch=1):
    return torch.full((batch, 3, size, size), float(value))


# ----------------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_gaussian_sigma_within_3_percent(sigma):
    y = noise.gaussian_noise(flat(0.5), sigma=sigma, generator=gen(), quantize="none")
    est = float((y - 0.5).std()) * 255
    assert abs(est - sigma) / sigma < 0.03


def test_gaussian_truncate_matches_reference():
    x = torch.rand(2, 3, 16, 16, generator=gen(1))
    y = noise.gaussian_noise(x, sigma=torch.tensor([10.0, 30.0]), generator=gen(2), quantize="truncate")
    g = gen(2)
    n = torch.stack([torch.randn(3, 16, 16, generator=g) for _ in range(2)])
    ref = torch.floor(torch.clamp(torch.clamp(x * 255, 0, 255) + n * torch.tensor([10.0, 30.0]).view(2, 1, 1, 1), 0, 255)) / 255
    assert torch.equal(y, ref)
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-4)


def test_poisson_variance_proportional_to_intensity():
    peak = 40.0
    ratios = []
    for level in (0.1, 0.3, 0.6):
        y = noise.poisson_noise(flat(level), peak=peak, generator=gen())
        var = float(y.var())
        assert abs(var - level / peak) / (level / peak) < 0.05
        ratios.append(var / level)
    assert max(ratios) / min(ratios) < 1.08


def test_salt_pepper_density_within_1_percent():
    y = noise.salt_pepper_noise(flat(0.5), density=0.1, generator=gen())
    px = y[0, 0]
    hit = float(((px == 0) | (px == 1)).float().mean())
    assert abs(hit - 0.1) < 0.01
    salt = float((px == 1).float().mean())
    assert abs(salt - 0.05) < 0.01
    assert torch.equal(y[0, 0], y[0, 1])  # impulses hit all channels of a pixel


def test_speckle_and_camera_noise_statistics():
    y = noise.speckle_noise(flat(0.4), sigma=0.1, generator=gen())
    assert abs(float(y.std()) - 0.04) / 0.04 < 0.03
    for level in (0.2, 0.7):
        y = noise.camera_noise(flat(level), shot=0.01, read=0.02, generator=gen(), quantize="none")
        want = 0.01 * level + 0.02**2
        assert abs(float(y.var()) - want) / want < 0.05


def test_noise_rejects_bad_input():
    with pytest.raises(ValueError):
        noise.gaussian_noise(flat(0.5, 8), sigma=-1.0, generator=gen())
    with pytest.raises(ValueError):
        noise.gaussian_noise(torch.zeros(3, 8, 8), sigma=1.0)
    with pytest.raises(ValueError):
        noise.gaussian_noise(flat(0.5, 8, batch=2), sigma=[1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------------------------------- blur
def _moments(k):
    k = k.double()
    n = k.shape[-1]
    r = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    yy, xx = torch.meshgrid(-r, r, indexing="ij")
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum()
    cyy = (k * (yy - my) ** 2).sum()
    cxy = (k * (xx - mx) * (yy - my)).sum()
    return torch.tensor([[cxx, cxy], [cxy, cyy]])


def test_all_kernels_sum_to_one():
    kernels = [blur.gaussian_kernel(15, 2.0), blur.gaussian_kernel(21, 3.0, 1.0, 0.7), blur.motion_kernel(21, 13, 40),
               blur.trajectory_kernel(21, 15, gen()), blur.disk_kernel(4.5), blur.sinc_kernel(15, 1.2)]
    for k in kernels:
        assert abs(float(k.sum()) - 1) < 1e-5
        assert k.shape[0] % 2 == 1


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_gaussian_kernel_matches_analytic_sigma(sigma):
    cov = _moments(blur.gaussian_kernel(41, sigma))
    assert abs(math.sqrt(cov[0, 0]) - sigma) / sigma < 0.01
    assert abs(math.sqrt(cov[1, 1]) - sigma) / sigma < 0.01


def test_anisotropic_kernel_axes_and_angle():
    theta = 0.6
    cov = _moments(blur.gaussian_kernel(41, 3.0, 1.5, theta))
    evals, evecs = torch.linalg.eigh(cov)
    assert abs(math.sqrt(evals[1]) - 3.0) < 0.03 and abs(math.sqrt(evals[0]) - 1.5) < 0.03
    angle = math.atan2(evecs[1, 1], evecs[0, 1]) % math.pi
    assert abs(angle - theta) < 0.01


def test_gaussian_blur_equals_opencv():
    x = torch.rand(1, 3, 40, 50, generator=gen())
    y = blur.gaussian_blur(x, sigma=2.0, kernel_size=15)
    arr = x[0].permute(1, 2, 0).numpy()
    ref = cv2.GaussianBlur(arr, (15, 15), 2.0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(y[0].permute(1, 2, 0).numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("length,angle", [(15, 30.0), (9, 120.0), (21, 0.0)])
def test_motion_kernel_length_and_angle(length, angle):
    cov = _moments(blur.motion_kernel(31, length, angle))
    evals, evecs = torch.linalg.eigh(cov)
    est_angle = math.degrees(math.atan2(evecs[1, 1], evecs[0, 1])) % 180
    assert min(abs(est_angle - angle % 180), 180 - abs(est_angle - angle % 180)) < 1.0
    assert abs(math.sqrt(12 * evals[1]) - length) / length < 0.05  # a uniform segment has variance L²/12


def test_blur_per_sample_kernels_in_one_batch():
    x = torch.rand(3, 3, 24, 24, generator=gen())
    y = blur.gaussian_blur(x, sigma=torch.tensor([0.8, 1.5, 2.5]))
    for i, s in enumerate((0.8, 1.5, 2.5)):
        assert torch.allclose(y[i:i + 1], blur.gaussian_blur(x[i:i + 1], sigma=s), atol=1e-6)


def test_defocus_and_sinc_are_lowpass_and_in_range():
    x = torch.rand(2, 3, 32, 32, generator=gen())
    for y in (blur.defocus_blur(x, radius=3.0), blur.sinc_blur(x, omega_c=1.0, kernel_size=15)):
        assert y.min() >= 0 and y.max() <= 1
        assert float(y.std()) < float(x.std())


# ----------------------------------------------------------------------------------------------------- JPEG
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_jpeg_equals_opencv(quality):
    x = torch.rand(2, 3, 37, 45, generator=gen(quality))
    y = jpeg.jpeg(x, quality=quality)
    for i in range(2):
        rgb = np.round(x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, quality])
        ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
        assert np.abs(y[i].permute(1, 2, 0).numpy() - ref).max() <= 1 / 255 + 1e-6
    assert (y - x).abs().mean() > 0


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_jpeg_chroma_subsampling_equals_pillow(subsampling):
    import io

    from PIL import Image

    x = torch.rand(1, 3, 40, 48, generator=gen(7))
    y = jpeg.jpeg(x, quality=40, subsampling=subsampling)
    buf = io.BytesIO()
    Image.fromarray(np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=40, subsampling=subsampling)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    assert np.abs(y[0].permute(1, 2, 0).numpy() - ref).max() <= 1 / 255 + 1e-6
    if subsampling == "4:2:0":  # the default: what the encoder has always been called with
        assert torch.equal(y, jpeg.jpeg(x, quality=40))
    else:
        assert not torch.equal(y, jpeg.jpeg(x, quality=40))


def test_jpeg_rejects_bad_quality():
    with pytest.raises(ValueError):
        jpeg.jpeg(flat(0.5, 8), quality=0)
    with pytest.raises(ValueError):
        jpeg.jpeg(flat(0.5, 8), quality=50.5)
    with pytest.raises(ValueError, match="4:1:1"):
        jpeg.jpeg(flat(0.5, 8), quality=50, subsampling="4:1:1")


# ----------------------------------------------------------------------------------------------------- weather
def test_haze_matches_scattering_model_exactly():
    x = torch.rand(2, 3, 20, 30, generator=gen())
    depth = torch.rand(2, 1, 20, 30, generator=gen(1)) * 7
    beta, a = torch.tensor([0.7, 2.0]), torch.tensor([0.9, 0.8])
    y = weather.haze(x, beta=beta, airlight=a, depth=depth)
    d = depth / depth.flatten(1).amax(1).view(2, 1, 1, 1)
    t = torch.exp(-beta.view(2, 1, 1, 1) * d)
    assert torch.allclose(y, x * t + a.view(2, 1, 1, 1) * (1 - t), atol=1e-6)


def test_synthetic_depth_prior():
    d = weather.synthetic_depth(64, 48, gen())
    assert d.shape == (1, 64, 48) and float(d.min()) == 0 and abs(float(d.max()) - 1) < 1e-6
    assert float(d[:, :16].mean()) > float(d[:, -16:].mean())  # top is far


def test_rain_adds_mostly_vertical_streaks_at_angle_zero():
    x = flat(0.3, 96)
    y = weather.rain(x, count=90, angle=0, length=30, width=3, generator=gen())
    layer = (y - x)[0, 0]
    assert (y >= x - 1e-7).all() and layer.max() > 0.3
    vert = float((layer[1:] * layer[:-1]).mean())
    horiz = float((layer[:, 1:] * layer[:, :-1]).mean())
    assert vert > horiz
    assert torch.equal(weather.rain(x, count=0, angle=0, length=30, width=3, generator=gen()), x)


def test_snow_and_raindrop_are_bounded_and_local():
    x = flat(0.2, 64)
    s = weather.snow(x, density=8, radius=2, layers=2, generator=gen())
    assert (s >= x - 1e-6).all() and s.max() > 0.5 and s.max() <= 1
    assert torch.equal(weather.snow(x, density=0, radius=2, layers=2, generator=gen()), x)
    r = weather.raindrop(torch.rand(1, 3, 64, 64, generator=gen()), count=5, radius=6, generator=gen())
    assert r.min() >= 0 and r.max() <= 1


# ----------------------------------------------------------------------------------------------------- light
@pytest.mark.parametrize("factor", [0.25, 0.5, 0.8])
def test_low_light_reduces_mean_by_requested_factor(factor):
    x = torch.rand(2, 3, 32, 32, generator=gen()) * 0.9 + 0.05
    y = light.low_light(x, gamma=1.0, scale=factor)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), factor * x.mean(dim=(1, 2, 3)), rtol=1e-4)


def test_low_light_gamma_darkens_monotonically():
    x = torch.rand(1, 3, 32, 32, generator=gen())
    means = [float(light.low_light(x, gamma=g).mean()) for g in (1.0, 1.5, 2.0, 3.0)]
    assert all(a > b for a, b in zip(means, means[1:]))


def test_over_exposure_brightens():
    x = torch.rand(1, 3, 16, 16, generator=gen())
    assert float(light.over_exposure(x, ev=1.0).mean()) > float(x.mean())
    assert torch.allclose(light.over_exposure(x, ev=0.0), x, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- others
def test_mosaic_keeps_samples_and_interpolates_linear_ramps():
    x = torch.rand(1, 3, 16, 16, generator=gen())
    y = mosaic.mosaic(x)
    m = mosaic.bayer_masks(16, 16).bool()
    assert torch.equal(y[0][m], x[0][m])
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16).contiguous()
    z = mosaic.mosaic(ramp)
    assert torch.allclose(z[..., 1:-1, 1:-1], ramp[..., 1:-1, 1:-1], atol=1e-6)


def test_resample_and_color_shift():
    x = torch.rand(2, 3, 32, 32, generator=gen())
    y = mosaic.resample(x, scale=torch.tensor([2.0, 4.0]))
    assert y.shape == x.shape and float((y - x).abs().mean()) > 0
    assert float((y[1] - x[1]).abs().mean()) > float((y[0] - x[0]).abs().mean())
    c = mosaic.color_shift(x * 0.5, gain_r=1.2, gain_g=1.0, gain_b=0.5)
    assert torch.allclose(c[:, 0], x[:, 0] * 0.6) and torch.allclose(c[:, 2], x[:, 2] * 0.25)


def test_opencv_demosaic_variants():
    x = torch.rand(1, 3, 24, 24, generator=gen())
    x[..., :, :] = torch.tensor([0.8, 0.4, 0.1]).view(1, 3, 1, 1)  # flat colour: every demosaic recovers it
    rgb = mosaic.mosaic(x, method="opencv_ea")
    bgr = mosaic.mosaic(x, method="opencv_ea_bgr")
    assert torch.allclose(rgb[..., 4:-4, 4:-4], x[..., 4:-4, 4:-4], atol=1 / 255)
    assert torch.equal(bgr, rgb.flip(1))
    with pytest.raises(ValueError):
        mosaic.mosaic(x, method="magic")


def test_snow_hardness_turns_soft_flakes_into_opaque_discs():
    soft, disc = weather.flake_profile(3.0, 0.0), weather.flake_profile(3.0, 1.0)
    assert soft.shape == disc.shape == (13, 13) and soft.max() == disc.max() == 1.0
    x = torch.arange(13.0) - 6
    dist = torch.sqrt(x[:, None] ** 2 + x[None, :] ** 2)
    assert (disc[dist <= 2.5] == 1).all() and (disc[dist >= 3.5] == 0).all()
    assert float((disc > 0.5).sum()) > 2.5 * float((soft > 0.5).sum())  # opaque flakes cover more
    assert float(disc.sum()) > 2 * float(soft.sum())
    torch.testing.assert_close(weather.flake_profile(3.0, 0.5), (soft + disc) / 2)
    x = flat(0.2, 128)
    s0 = weather.snow(x, density=20, radius=3, layers=3, generator=gen())
    s1 = weather.snow(x, density=20, radius=3, layers=3, hardness=1.0, generator=gen())
    assert torch.equal(weather.snow(x, density=20, radius=3, layers=3, hardness=0.0, generator=gen()), s0)
    assert float((s1 - x).mean()) > 1.5 * float((s0 - x).mean())  # the same flakes, more snow on the image
    with pytest.raises(ValueError, match="hardness in \\[0, 1\\]"):
        weather.snow(x, density=20, radius=3, layers=1, hardness=1.5, generator=gen())
