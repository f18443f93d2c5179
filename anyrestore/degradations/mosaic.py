"""Sensor/pipeline degradations: Bayer mosaic + bilinear demosaic, down-/re-up-sampling, colour cast."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from anyrestore.degradations._util import check_image, per_sample

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
DEMOSAIC_METHODS = ("bilinear", "opencv_ea", "opencv_ea_bgr")
RESAMPLE_MODES = ("bicubic", "bilinear", "area", "nearest")


def bayer_masks(height: int, width: int, pattern: str = "RGGB", device=None) -> torch.Tensor:
    """(3,H,W) 0/1 masks of the R, G, B sites of a Bayer colour filter array whose top-left 2×2 is ``pattern``."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; expected one of {PATTERNS}")
    m = torch.zeros(3, height, width, device=device)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        m["RGB".index(ch), dy::2, dx::2] = 1.0
    return m


_KERNEL_RB = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
_KERNEL_G = torch.tensor([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])


def mosaic(img: torch.Tensor, *, pattern: str = "RGGB", method: str = "bilinear") -> torch.Tensor:
    """Sample an RGB image through a Bayer CFA and demosaic it.

    Methods:
        ``bilinear``: normalised convolution; measured samples are kept exactly, missing ones are the average of
            the nearest same-colour neighbours (also at the borders).
        ``opencv_ea``: OpenCV's edge-aware demosaic on the uint8-rounded mosaic, returned as RGB.
        ``opencv_ea_bgr``: the same with OpenCV's BGR output left unswapped (MaskDCPT's Urban100 mosaic test
            data has this channel order; for the compat protocol only).
    """
    check_image(img, channels=3)
    if method not in DEMOSAIC_METHODS:
        raise ValueError(f"unknown demosaic method {method!r}; expected one of {DEMOSAIC_METHODS}")
    b, c, h, w = img.shape
    m = bayer_masks(h, w, pattern, img.device).to(img.dtype)
    if method != "bilinear":
        import cv2
        import numpy as np

        raw = torch.round((img * m).sum(dim=1).clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
        code = getattr(cv2, f"COLOR_Bayer{pattern}2BGR_EA")
        out = np.stack([cv2.cvtColor(np.ascontiguousarray(r), code) for r in raw])  # (B,H,W,3) BGR
        if method == "opencv_ea":
            out = out[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).to(img.device, img.dtype) / 255.0
    k = torch.stack([_KERNEL_RB, _KERNEL_G, _KERNEL_RB]).unsqueeze(1).to(img.device, img.dtype)  # (3,1,3,3)
    num = F.conv2d(img * m, k, padding=1, groups=3)
    den = F.conv2d(m.unsqueeze(0), k, padding=1, groups=3)
    out = num / den
    return torch.where(m.bool().unsqueeze(0), img, out)


def resample(img: torch.Tensor, *, scale, mode: str = "bicubic", up_mode: str = "bicubic") -> torch.Tensor:
    """Down-sample by ``scale`` (≥ 1, per sample) with ``mode`` and re-up-sample to the input size with ``up_mode``."""
    check_image(img)
    if mode not in RESAMPLE_MODES or up_mode not in RESAMPLE_MODES:
        raise ValueError(f"resample modes must be in {RESAMPLE_MODES}, got {mode!r}, {up_mode!r}")
    b, c, h, w = img.shape
    s = per_sample(scale, b, name="scale", dtype=torch.float64)
    if (s < 1).any():
        raise ValueError("resample scale must be >= 1")
    out = []
    for i in range(b):
        size = (max(1, round(h / float(s[i]))), max(1, round(w / float(s[i]))))
        kw = {"antialias": True} if mode in ("bicubic", "bilinear") else {}
        small = F.interpolate(img[i:i + 1], size=size, mode=mode, **kw)
        kw_up = {"align_corners": False} if up_mode in ("bicubic", "bilinear") else {}
        out.append(F.interpolate(small, size=(h, w), mode=up_mode, **kw_up))
    return torch.cat(out).clamp(0.0, 1.0)


def color_shift(img: torch.Tensor, *, gain_r, gain_g, gain_b) -> torch.Tensor:
    """Colour cast: multiply each RGB channel by its own gain (per sample), then clip."""
    check_image(img, channels=3)
    b = img.shape[0]
    gains = torch.stack([per_sample(g, b, name=n, device=img.device, dtype=img.dtype)
                         for g, n in ((gain_r, "gain_r"), (gain_g, "gain_g"), (gain_b, "gain_b"))], dim=1)
    if (gains < 0).any():
        raise ValueError("colour gains must be >= 0")
    return (img * gains.view(b, 3, 1, 1)).clamp(0.0, 1.0)
