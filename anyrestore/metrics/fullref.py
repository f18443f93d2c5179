"""Full-reference metrics: PSNR and SSIM under named protocols (conventions.md §2).

Signatures (stable; the training engine and ``anyrestore eval`` call these)::

    psnr(pred, gt, *, protocol="basicsr", crop_border=None, y=False, reduction="mean") -> float | list[float]
    ssim(pred, gt, *, protocol="basicsr", crop_border=None, y=False, reduction="mean") -> float | list[float]

Inputs (``pred`` and ``gt`` of the same kind and shape):

* torch tensors (C, H, W) or (B, C, H, W): float in [0, 1], or uint8 (0-255);
* NumPy arrays (H, W, C) or (B, H, W, C) or (H, W): float in [0, 1], uint8 or uint16.

Float inputs are clipped to [0, 1]. C is 3 (RGB) or 1. ``y=True`` scores the BT.601 luma
(Y = 16 + 65.481 R + 128.553 G + 24.966 B on the 0-255 scale, MATLAB ``rgb2ycbcr``). ``crop_border=None`` uses
the protocol's default; an explicit value overrides it. ``reduction="mean"`` returns the mean of per-image values
(a batch of one returns that image's value); ``"none"`` returns the list of per-image values. Identical images
have PSNR ``inf``; :func:`dataset_mean` averages per-image values, excluding ``inf`` with a warning.

Protocols (:data:`PROTOCOLS`):

* ``basicsr``: clamp, x255, round to uint8, float64 on 0-255; PSNR 10 log10(255^2/MSE) over all channels; SSIM
  with an 11x11 Gaussian window (sigma 1.5), "valid" filtering, C1=(0.01*255)^2, C2=(0.03*255)^2, mean of the
  per-channel SSIM. Default crop 0.
* ``skimage``: float [0, 1] not quantised; PSNR with data range 1; SSIM with a 7x7 uniform window, sample
  covariance (49/48), C1=0.01^2, C2=0.03^2, mean over the valid map and channels; equals
  ``skimage.metrics`` with ``data_range=1, channel_axis=-1`` on float64 input. Default crop 0.
* ``ram``: ``basicsr`` with crop 4.
* ``maskdcpt``: BasicSR formulas on the float [0, 1] image (clamped, not rounded): peak 1, Gaussian valid SSIM
  with C1=0.01^2, C2=0.03^2. Default crop 0.
* ``maskdcpt_dn``: ``basicsr`` (uint8 rounding, peak 255), crop 0.
* ``restormer`` (BasicSR fork of Restormer/NAFNet/RetinexFormer/UniRestorer): PSNR as ``basicsr``; RGB SSIM with a
  3-D 11x11x11 Gaussian (sigma 1.5) over (H, W, C), replicate padding, mean of the full map; Y SSIM with the 2-D
  Gaussian, replicate padding, full map. Peak always 255 (upstream infers it from the data). Computed in float64;
  upstream runs the 3-D filter in float32, so its values can differ in the trailing digits.
* ``matlab_y`` (Restormer deraining / GoPro scripts): Y only, rounded to uint8 levels; PSNR and Gaussian valid SSIM.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from anyrestore.errors import AnyRestoreError


class MetricInputError(AnyRestoreError, ValueError):
    """The images given to a metric do not fit together (shape, size, dtype or protocol)."""


@dataclass(frozen=True)
class Protocol:
    """How a metric protocol turns images into numbers (recorded with every result)."""

    name: str
    quantize: bool  # round to uint8 levels before scoring
    peak: float  # data range the arrays are scored on (255 or 1)
    window: Literal["gauss11", "uniform7"]
    crop_border: int
    border: Literal["valid", "replicate"] = "valid"  # SSIM map: valid region, or full map with replicate padding
    rgb_3d: bool = False  # RGB SSIM with one 3-D Gaussian over (H, W, C) instead of per-channel 2-D windows
    y_only: bool = False  # the protocol always scores Y
    round_y: bool = False  # Y rounded to uint8 levels (MATLAB rgb2ycbcr on uint8 input)

    def ssim_variant(self, y: bool = False) -> str:
        if self.window == "uniform7":
            return "uniform7"
        if self.rgb_3d and not (y or self.y_only):
            return "gauss3d_replicate"
        return "gauss11_replicate" if self.border == "replicate" else "gauss11_valid"

    def record(self, *, crop_border: int, y: bool) -> dict:
        """The protocol fields of a metric record (conventions.md §2.5)."""
        y = y or self.y_only
        return {
            "protocol": self.name,
            "crop_border": crop_border,
            "channel": "y" if y else "rgb",
            "quantize": "uint8" if self.quantize else "none",
            "ssim_variant": self.ssim_variant(y),
        }


PROTOCOLS: dict[str, Protocol] = {
    "basicsr": Protocol("basicsr", quantize=True, peak=255.0, window="gauss11", crop_border=0),
    "skimage": Protocol("skimage", quantize=False, peak=1.0, window="uniform7", crop_border=0),
    "ram": Protocol("ram", quantize=True, peak=255.0, window="gauss11", crop_border=4),
    "maskdcpt": Protocol("maskdcpt", quantize=False, peak=1.0, window="gauss11", crop_border=0),
    "maskdcpt_dn": Protocol("maskdcpt_dn", quantize=True, peak=255.0, window="gauss11", crop_border=0),
    "restormer": Protocol("restormer", quantize=True, peak=255.0, window="gauss11", crop_border=0,
                          border="replicate", rgb_3d=True),
    "matlab_y": Protocol("matlab_y", quantize=True, peak=255.0, window="gauss11", crop_border=0, y_only=True,
                         round_y=True),
}

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` called ``name``; raises MetricInputError listing the known ones."""
    if name not in PROTOCOLS:
        raise MetricInputError(f"unknown metric protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def psnr(pred, gt, *, protocol: str = "basicsr", crop_border: int | None = None, y: bool = False,
         reduction: Literal["mean", "none"] = "mean") -> float | list[float]:
    """Peak signal-to-noise ratio in dB under ``protocol`` (see module docstring for inputs and options)."""
    proto = get_protocol(protocol)
    values = [_psnr_one(p, g, proto.peak) for p, g in _prepared_pairs(pred, gt, proto, crop_border, y)]
    return _reduce(values, reduction)


def ssim(pred, gt, *, protocol: str = "basicsr", crop_border: int | None = None, y: bool = False,
         reduction: Literal["mean", "none"] = "mean") -> float | list[float]:
    """Structural similarity under ``protocol`` (see module docstring for inputs and options)."""
    proto = get_protocol(protocol)
    values = [_ssim_one(p, g, proto) for p, g in _prepared_pairs(pred, gt, proto, crop_border, y)]
    return _reduce(values, reduction)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (..., 3) RGB array in [0, 1], on the 0-255 scale (range 16..235), float64, unrounded."""
    return 16.0 + np.asarray(rgb, np.float64) @ _Y_WEIGHTS


def dataset_mean(values: Sequence[float]) -> float:
    """Mean of per-image values; ``inf`` entries (identical images) are excluded with a warning.

    Returns ``inf`` when every value is ``inf`` and ``nan`` for an empty sequence.
    """
    values = [float(v) for v in values]
    if not values:
        return math.nan
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        if not finite:
            return math.inf
        warnings.warn(f"{len(values) - len(finite)} of {len(values)} values are infinite (identical images); "
                      "they are excluded from the mean", stacklevel=2)
    return float(np.mean(finite))


def _reduce(values: list[float], reduction: str) -> float | list[float]:
    if reduction == "none":
        return values
    if reduction != "mean":
        raise MetricInputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return dataset_mean(values) if len(values) > 1 else values[0]


def _prepared_pairs(pred, gt, proto: Protocol, crop_border: int | None, y: bool):
    """Yield per-image (pred, gt) float64 HWC arrays on the protocol's scale, quantised, cropped, Y if asked."""
    crop = proto.crop_border if crop_border is None else int(crop_border)
    if crop < 0:
        raise MetricInputError(f"crop_border must be >= 0, got {crop}")
    a, b = _as_batch(pred, "pred"), _as_batch(gt, "gt")
    if a.shape != b.shape:
        raise MetricInputError(f"pred and gt differ in shape: {a.shape[1:]} vs {b.shape[1:]} (B,H,W,C), batch {a.shape[0]} vs {b.shape[0]}")
    y = y or proto.y_only
    if y and a.shape[-1] != 3:
        raise MetricInputError(f"y=True needs RGB images, got {a.shape[-1]} channel(s)")
    h, w = a.shape[1:3]
    if 2 * crop >= min(h, w):
        raise MetricInputError(f"crop_border {crop} leaves nothing of a {h}x{w} image")
    for p, g in zip(a, b):
        p, g = (_to_scale(img, proto, y, crop) for img in (p, g))
        yield p, g


def _to_scale(img: np.ndarray, proto: Protocol, y: bool, crop: int) -> np.ndarray:
    if proto.quantize:
        img = np.round(img * 255.0) / 255.0  # uint8 levels, as BasicSR's tensor2img
    if crop:
        img = img[crop:-crop, crop:-crop]
    if y:
        luma = rgb_to_y(img)[..., None]
        img = (np.round(luma) if proto.round_y else luma) / 255.0
    return img * proto.peak


def _as_batch(image, name: str) -> np.ndarray:
    """(B, H, W, C) float64 array in [0, 1] from a tensor (C,H,W)/(B,C,H,W) or an array (H,W[,C])/(B,H,W,C)."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # also covers fp16/bf16, which NumPy cannot hold
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4:
            raise MetricInputError(f"{name}: expected a (C,H,W) or (B,C,H,W) tensor, got shape {tuple(image.shape)}")
        array = t.permute(0, 2, 3, 1).numpy()
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[None, :, :, None]
        elif array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise MetricInputError(f"{name}: expected an (H,W,C) or (B,H,W,C) array, got shape {array.shape}")
    if array.shape[-1] not in (1, 3):
        raise MetricInputError(f"{name}: expected 1 or 3 channels, got {array.shape[-1]} (tensors are CHW, arrays HWC)")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    if not np.issubdtype(array.dtype, np.floating):
        raise MetricInputError(f"{name}: unsupported dtype {array.dtype}")
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def _psnr_one(p: np.ndarray, g: np.ndarray, peak: float) -> float:
    mse = float(np.mean((p - g) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _ssim_one(p: np.ndarray, g: np.ndarray, proto: Protocol) -> float:
    window = _gaussian_1d(11, 1.5) if proto.window == "gauss11" else np.full(7, 1.0 / 7.0)
    size = window.size
    if proto.border == "valid" and min(p.shape[:2]) < size:
        raise MetricInputError(f"SSIM ({proto.name}) needs images of at least {size}x{size} after cropping, got {p.shape[0]}x{p.shape[1]}")
    c1, c2 = (0.01 * proto.peak) ** 2, (0.03 * proto.peak) ** 2
    # Sample covariance for the uniform window (skimage), plain weighted moments for the Gaussian one (BasicSR).
    cov_norm = size * size / (size * size - 1.0) if proto.window == "uniform7" else 1.0
    if proto.rgb_3d and p.shape[2] == 3:
        return float(_ssim_map(p, g, window, c1, c2, cov_norm, axes=(0, 1, 2), replicate=True).mean())
    scores = [_ssim_map(p[:, :, c], g[:, :, c], window, c1, c2, cov_norm, axes=(0, 1),
                        replicate=proto.border == "replicate").mean() for c in range(p.shape[2])]
    return float(np.mean(scores))


def _ssim_map(x, z, window, c1, c2, cov_norm, *, axes, replicate):
    def filt(a):
        if replicate:  # same-size map: pad the filtered axes by edge replication
            half = window.size // 2
            a = np.pad(a, [(half, half) if i in axes else (0, 0) for i in range(a.ndim)], mode="edge")
        return _filter_valid(a, window, axes)

    mx, mz = filt(x), filt(z)
    vx = cov_norm * (filt(x * x) - mx * mx)
    vz = cov_norm * (filt(z * z) - mz * mz)
    cxz = cov_norm * (filt(x * z) - mx * mz)
    return ((2 * mx * mz + c1) * (2 * cxz + c2)) / ((mx * mx + mz * mz + c1) * (vx + vz + c2))


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray, axes=(0, 1)) -> np.ndarray:
    """Separable 'valid' correlation with the outer product of ``w`` along each of ``axes``."""
    k = w.size
    for axis in axes:
        n = img.shape[axis] - k + 1
        img = sum(w[i] * np.take(img, np.arange(i, i + n), axis=axis) for i in range(k))
    return img
