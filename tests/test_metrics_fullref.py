import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from anyrestore.errors import AnyRestoreError
from anyrestore.metrics import (MetricInputError, MetricNotAvailableError, dataset_mean, niqe, psnr, rgb_to_y,
                                ssim)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    gt = rng.random((37, 45, 3))
    pred = np.clip(gt + rng.normal(0, 0.08, gt.shape), 0, 1)
    return pred, gt


# --- independent float64 reference for the Gaussian-valid (BasicSR / MATLAB) protocol -------------------------

def _ref_gauss_ssim_channel(x, y, peak):
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()

    def filt(a):  # direct 2-D 'valid' correlation, no separability
        return np.einsum("ijkl,kl->ij", sliding_window_view(a, (11, 11)), win)

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean()


def _ref_basicsr(pred, gt, crop=0, y=False):
    """BasicSR's recipe written out: uint8 rounding, crop, optional Y (float), PSNR peak 255, per-channel SSIM."""
    p = np.round(np.clip(pred, 0, 1) * 255).astype(np.float64)
    g = np.round(np.clip(gt, 0, 1) * 255).astype(np.float64)
    if crop:
        p, g = p[crop:-crop, crop:-crop], g[crop:-crop, crop:-crop]
    if y:
        p = (16 + p[..., 0] * 65.481 / 255 + p[..., 1] * 128.553 / 255 + p[..., 2] * 24.966 / 255)[..., None]
        g = (16 + g[..., 0] * 65.481 / 255 + g[..., 1] * 128.553 / 255 + g[..., 2] * 24.966 / 255)[..., None]
    mse = np.mean((p - g) ** 2)
    ps = 10 * np.log10(255.0 ** 2 / mse)
    ss = np.mean([_ref_gauss_ssim_channel(p[..., c], g[..., c], 255.0) for c in range(p.shape[-1])])
    return ps, ss


# --- skimage protocol ------------------------------------------------------------------------------------------

def test_skimage_protocol_matches_scikit_image(pair):
    pred, gt = pair
    assert abs(psnr(pred, gt, protocol="skimage") - peak_signal_noise_ratio(gt, pred, data_range=1)) < 1e-10
    ref = structural_similarity(gt, pred, data_range=1, channel_axis=-1)
    assert abs(ssim(pred, gt, protocol="skimage") - ref) < 1e-10


def test_skimage_protocol_y_and_crop(pair):
    pred, gt = pair
    py, gy = rgb_to_y(pred[3:-3, 3:-3]) / 255, rgb_to_y(gt[3:-3, 3:-3]) / 255
    assert abs(ssim(pred, gt, protocol="skimage", y=True, crop_border=3)
               - structural_similarity(gy, py, data_range=1)) < 1e-10
    assert abs(psnr(pred, gt, protocol="skimage", y=True, crop_border=3)
               - peak_signal_noise_ratio(gy, py, data_range=1)) < 1e-10


# --- basicsr protocol and variants ---------------------------------------------------------------------------

@pytest.mark.parametrize("crop,y", [(0, False), (4, False), (0, True), (2, True)])
def test_basicsr_matches_independent_reference(pair, crop, y):
    pred, gt = pair
    ref_psnr, ref_ssim = _ref_basicsr(pred, gt, crop, y)
    assert abs(psnr(pred, gt, crop_border=crop, y=y) - ref_psnr) < 1e-10
    assert abs(ssim(pred, gt, crop_border=crop, y=y) - ref_ssim) < 1e-10


def test_ram_protocol_is_basicsr_with_crop_4(pair):
    pred, gt = pair
    assert psnr(pred, gt, protocol="ram") == psnr(pred, gt, protocol="basicsr", crop_border=4)
    assert ssim(pred, gt, protocol="ram") == ssim(pred, gt, protocol="basicsr", crop_border=4)
    assert psnr(pred, gt, protocol="ram") != psnr(pred, gt, protocol="basicsr")


def test_maskdcpt_protocol_float_peak_one(pair):
    pred, gt = pair
    assert abs(psnr(pred, gt, protocol="maskdcpt") - peak_signal_noise_ratio(gt, pred, data_range=1)) < 1e-10
    ref = np.mean([_ref_gauss_ssim_channel(pred[..., c], gt[..., c], 1.0) for c in range(3)])
    assert abs(ssim(pred, gt, protocol="maskdcpt") - ref) < 1e-10


def test_basicsr_quantises_but_skimage_does_not(pair):
    pred, gt = pair
    rounded = np.round(pred * 255) / 255
    assert psnr(pred, gt) == psnr(rounded, gt)
    assert psnr(pred, gt, protocol="skimage") != psnr(rounded, gt, protocol="skimage")


# --- golden cases ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 3, 10])
def test_constant_offset_psnr(d):
    gt = np.random.default_rng(d).integers(20, 200, (16, 16, 3), dtype=np.uint8)
    pred = gt + np.uint8(d)
    assert abs(psnr(pred, gt) - 20 * math.log10(255 / d)) < 1e-10


def test_y_formula_on_cube_corners():
    expected = {(0, 0, 0): 16.0, (1, 1, 1): 235.0, (1, 0, 0): 81.481, (0, 1, 0): 144.553, (0, 0, 1): 40.966,
                (1, 1, 0): 210.034, (0, 1, 1): 169.519, (1, 0, 1): 106.447}
    for rgb, y in expected.items():
        assert abs(rgb_to_y(np.array(rgb, float)) - y) < 1e-9


@pytest.mark.parametrize("protocol", ["basicsr", "skimage", "ram", "maskdcpt"])
def test_identical_images(pair, protocol):
    _, gt = pair
    assert psnr(gt, gt, protocol=protocol) == math.inf
    assert abs(ssim(gt, gt, protocol=protocol) - 1.0) < 1e-12


def test_dataset_mean_excludes_inf_with_warning():
    with pytest.warns(UserWarning, match="excluded"):
        assert dataset_mean([30.0, math.inf, 40.0]) == 35.0
    assert dataset_mean([math.inf]) == math.inf


# --- input kinds -------------------------------------------------------------------------------------------

def test_tensor_numpy_and_batch_inputs_agree(pair):
    pred, gt = pair
    tp = torch.from_numpy(pred).permute(2, 0, 1).float()
    tg = torch.from_numpy(gt).permute(2, 0, 1).float()
    per = psnr(torch.stack([tp, tp.flip(-1)]), torch.stack([tg, tg.flip(-1)]), reduction="none")
    assert len(per) == 2 and abs(per[0] - per[1]) < 1e-9
    assert abs(psnr(tp, tg) - per[0]) < 1e-12
    # float32 tensors round to the same uint8 levels as the float64 arrays here (no value sits on a .5 boundary)
    assert abs(psnr(tp, tg) - psnr(pred, gt)) < 1e-6
    u8p, u8g = (np.round(a * 255).astype(np.uint8) for a in (pred, gt))
    assert psnr(u8p, u8g) == psnr(pred, gt)
    batch = ssim(np.stack([pred, gt]), np.stack([gt, gt]), reduction="none")
    assert batch[1] == pytest.approx(1.0) and batch[0] == pytest.approx(ssim(pred, gt))


def test_errors(pair):
    pred, gt = pair
    with pytest.raises(MetricInputError, match="shape"):
        psnr(pred[:-1], gt)
    with pytest.raises(MetricInputError, match="protocol"):
        psnr(pred, gt, protocol="matlab")
    with pytest.raises(MetricInputError, match="crop_border"):
        psnr(pred, gt, crop_border=30)
    with pytest.raises(MetricInputError, match="at least"):
        ssim(pred[:9, :9], gt[:9, :9])
    with pytest.raises(MetricNotAvailableError) as err:
        niqe(gt)
    assert isinstance(err.value, AnyRestoreError) and isinstance(err.value, NotImplementedError)


# --- restormer / matlab_y variants ------------------------------------------------------------------------

def _moments_ssim(filt, x, y, peak=255.0):
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean()


def test_restormer_protocol_matches_upstream_style_reference(pair):
    import cv2

    pred, gt = pair
    p8 = np.round(pred * 255).astype(np.float64)
    g8 = np.round(gt * 255).astype(np.float64)
    k = cv2.getGaussianKernel(11, 1.5)[:, 0]
    kernel3d = torch.from_numpy(np.einsum("i,j,k->ijk", k, k, k))[None, None]

    def filt3d(a):  # Conv3d over (H, W, C) with replicate padding, as in the Restormer fork (here in float64)
        t = torch.from_numpy(a)[None, None]
        t = torch.nn.functional.pad(t, (5, 5, 5, 5, 5, 5), mode="replicate")
        return torch.nn.functional.conv3d(t, kernel3d)[0, 0].numpy()

    assert abs(ssim(pred, gt, protocol="restormer") - _moments_ssim(filt3d, p8, g8)) < 1e-10
    window = np.outer(k, k)
    y_p, y_g = rgb_to_y(p8 / 255), rgb_to_y(g8 / 255)
    ref_y = _moments_ssim(lambda a: cv2.filter2D(a, -1, window, borderType=cv2.BORDER_REPLICATE), y_p, y_g)
    assert abs(ssim(pred, gt, protocol="restormer", y=True) - ref_y) < 1e-10
    assert psnr(pred, gt, protocol="restormer") == psnr(pred, gt, protocol="basicsr")


def test_matlab_y_rounds_luma(pair):
    pred, gt = pair
    y_p = np.round(rgb_to_y(np.round(pred * 255) / 255))
    y_g = np.round(rgb_to_y(np.round(gt * 255) / 255))
    rmse = np.sqrt(np.mean((y_p - y_g) ** 2))
    assert abs(psnr(pred, gt, protocol="matlab_y") - 20 * np.log10(255 / rmse)) < 1e-10
    assert abs(ssim(pred, gt, protocol="matlab_y") - _ref_gauss_ssim_channel(y_p, y_g, 255.0)) < 1e-10
    assert psnr(pred, gt, protocol="matlab_y") != psnr(pred, gt, y=True)


def test_protocol_records():
    from anyrestore.metrics import get_protocol

    assert get_protocol("restormer").record(crop_border=0, y=False)["ssim_variant"] == "gauss3d_replicate"
    assert get_protocol("restormer").record(crop_border=0, y=True)["ssim_variant"] == "gauss11_replicate"
    assert get_protocol("matlab_y").record(crop_border=0, y=False)["channel"] == "y"
    assert get_protocol("skimage").record(crop_border=2, y=False) == {
        "protocol": "skimage", "crop_border": 2, "channel": "rgb", "quantize": "none", "ssim_variant": "uniform7"}


def test_low_precision_tensors_accepted(pair):
    pred, gt = pair
    tp = torch.from_numpy(pred).permute(2, 0, 1).to(torch.bfloat16)
    tg = torch.from_numpy(gt).permute(2, 0, 1).to(torch.bfloat16)
    assert abs(psnr(tp, tg) - psnr(tp.float(), tg.float())) < 1e-12
