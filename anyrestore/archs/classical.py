"""Classical, weight-free restorer: the baseline and the default ``restore`` model until a trained default ships.

Per image:
1. **Deblocking** (only when the image shows an 8x8 JPEG grid): the blockiness ratio (mean absolute step across
   8-pixel block boundaries / mean step inside blocks) decides the strength; small steps at block boundaries are
   spread over the two pixels on each side, large steps (real edges) are left alone.
2. **Noise estimate**: per channel, the median absolute response of Immerkaer's Laplacian-difference kernel
   (norm 6 for white noise) divided by 0.6745 -> a robust sigma on the 0-255 scale, averaged over channels.
3. **Denoising**: OpenCV ``fastNlMeansDenoisingColored`` with ``h = hColor = 0.55 * sigma`` (tuned on held-out
   noise levels 10/25/50), skipped when sigma is below 1.5.

It works on [0, 1] RGB tensors through NumPy/OpenCV on the CPU (8-bit internally; not differentiable) and has no
parameters. Grid alignment needs tile offsets that are multiples of 8, hence ``pad_multiple=8``; it prefers the
whole image so the estimates are global.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from anyrestore.archs.registry import register_arch, register_preset

_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Robust Gaussian-noise sigma (0-255 scale) of an HWC float image on the 0-255 scale."""
    sigmas = []
    for c in range(image.shape[2]):
        response = cv2.filter2D(image[:, :, c].astype(np.float32), -1, _NOISE_KERNEL)[1:-1, 1:-1]
        if response.size == 0:
            return 0.0
        sigmas.append(float(np.median(np.abs(response))) / (0.6745 * 6.0))
    return float(np.mean(sigmas))


def blockiness(image: np.ndarray, block: int = 8) -> float:
    """Ratio of the mean absolute horizontal+vertical step across block boundaries to the step inside blocks."""
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(image, axis=axis)).mean(axis=tuple(i for i in range(image.ndim) if i != axis))
        if steps.size < 2 * block:
            continue
        on_boundary = (np.arange(steps.size) % block) == block - 1  # step between pixel 8k-1 and 8k
        ratios.append(steps[on_boundary].mean() / max(steps[~on_boundary].mean(), 1e-6))
    return float(np.mean(ratios)) if ratios else 1.0


def deblock(image: np.ndarray, *, strength: float, threshold: float = 0.06, block: int = 8) -> np.ndarray:
    """Soften small steps across 8x8 block boundaries of an HWC [0, 1] image (returns a new array)."""
    out = image.astype(np.float32, copy=True)
    for axis in (0, 1):
        size = out.shape[axis]
        for b in range(block, size - 1, block):
            take = lambda i: np.take(out, i, axis=axis)  # noqa: E731
            step = take(b) - take(b - 1)
            delta = np.where(np.abs(step) < threshold, step, 0.0) * (0.25 * strength)
            for offset, share in ((-2, 0.5), (-1, 1.0), (0, -1.0), (1, -0.5)):
                idx = [slice(None)] * out.ndim
                idx[axis] = b + offset
                out[tuple(idx)] += share * delta
    return np.clip(out, 0.0, 1.0)


@register_arch("classical")
class ClassicalRestorer(nn.Module):
    """Weight-free denoise + deblock baseline on (B, 3, H, W) [0, 1] tensors.

    Args:
        h_factor: NL-means filter strength per unit of estimated noise sigma.
        min_sigma: estimated sigma (0-255 scale) below which no denoising happens.
        deblock_threshold: blockiness ratio above which deblocking is applied (natural images are near 1).
    """

    prefer_whole_image = True

    def __init__(self, *, h_factor: float = 0.55, min_sigma: float = 1.5, deblock_threshold: float = 1.15) -> None:
        super().__init__()
        self.h_factor = h_factor
        self.min_sigma = min_sigma
        self.deblock_threshold = deblock_threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"classical restorer expects (B,3,H,W), got {tuple(x.shape)}")
        images = x.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        restored = np.stack([self.restore_array(img) for img in images])
        return torch.from_numpy(restored).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)

    def restore_array(self, rgb: np.ndarray) -> np.ndarray:
        """Restore one HWC float32 RGB image in [0, 1]."""
        ratio = blockiness(rgb)
        if ratio > self.deblock_threshold:
            rgb = deblock(rgb, strength=min(1.0, (ratio - 1.0) * 2.0))
        sigma = estimate_noise_sigma(rgb * 255.0)
        if sigma < self.min_sigma:
            return rgb.astype(np.float32)
        bgr8 = np.round(rgb[:, :, ::-1] * 255.0).astype(np.uint8)
        h = self.h_factor * sigma
        out = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(bgr8), None, h, h, 7, 21)
        return (out[:, :, ::-1].astype(np.float32) / 255.0).copy()


register_preset(
    "classical",
    "classical",
    description="weight-free baseline: noise estimate + OpenCV NL-means + mild JPEG deblocking",
    pad_multiple=8,
)
