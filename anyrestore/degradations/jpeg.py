"""JPEG compression through OpenCV's encoder (libjpeg, default settings: 4:2:0 chroma), as the reference codes do.
Other chroma subsamplings (4:2:2, 4:4:4) are there for training data that must not know one encoder setting only."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from anyrestore.degradations._util import check_image, per_sample


SUBSAMPLINGS = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}  # 4:2:0 is the encoder's default: the same bytes


def jpeg_uint8(rgb: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """Encode/decode one (H,W,3) uint8 RGB (or (H,W) grey) array at ``quality`` with OpenCV; returns the same layout.
    ``subsampling`` is the chroma subsampling of colour images: "4:2:0" (the default), "4:2:2" or "4:4:4"."""
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"unknown JPEG chroma subsampling {subsampling!r}; expected one of {', '.join(SUBSAMPLINGS)}")
    bgr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality),
              int(cv2.IMWRITE_JPEG_SAMPLING_FACTOR), int(SUBSAMPLINGS[subsampling])]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), params)
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG image")
    flag = cv2.IMREAD_COLOR if rgb.ndim == 3 else cv2.IMREAD_GRAYSCALE
    dec = cv2.imdecode(buf, flag)
    return dec[..., ::-1] if rgb.ndim == 3 else dec


def jpeg(img: torch.Tensor, *, quality, subsampling: str = "4:2:0") -> torch.Tensor:
    """JPEG round trip per sample: round to uint8, encode RGB at ``quality`` (1–100) with OpenCV, decode, /255.

    Args:
        img: (B,C,H,W) float in [0,1] with C = 3 (RGB) or 1 (grey).
        quality: scalar or (B,) integer quality.
        subsampling: chroma subsampling of colour images, "4:2:0" (OpenCV's default), "4:2:2" or "4:4:4".

    Example:
        >>> y = jpeg(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), quality=50)
        >>> y.shape, bool((y * 255 - (y * 255).round()).abs().max() < 1e-4)
        (torch.Size([1, 3, 16, 16]), True)
    """
    check_image(img)
    b, c = img.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"jpeg needs 1 or 3 channels, got {c}")
    q = per_sample(quality, b, name="quality", dtype=torch.float64)
    if ((q < 1) | (q > 100) | (q != q.round())).any():
        raise ValueError(f"JPEG quality must be an integer in [1, 100], got {q.tolist()}")
    u8 = torch.round(img.detach().clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for i in range(b):
        arr = u8[i] if c == 3 else u8[i, ..., 0]
        dec = jpeg_uint8(arr, int(q[i]), subsampling)
        out.append(torch.from_numpy(np.ascontiguousarray(dec)).reshape(arr.shape[0], arr.shape[1], c))
    res = torch.stack(out).permute(0, 3, 1, 2).to(device=img.device, dtype=img.dtype) / 255.0
    return res
