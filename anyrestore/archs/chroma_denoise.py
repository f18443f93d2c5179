"""Smooth the restored image's colour under the guidance of its own luma: the default model's colour-noise stage.

The compact U-Net of the default model leaves colour noise behind on strongly noisy photos: blotches of chroma
where the luma is already clean. A guided filter (He et al.) of the chroma channels Cb and Cr with the restored
luma Y as guide removes them: in each ``(2 RADIUS + 1)²`` window the chroma is replaced by its best affine fit
``a·Y + b``, so chroma edges that follow luma edges stay and blotches on flat luma go. Luma is left exactly as it
is. On photos whose colour texture does not follow the luma (sand, gravel) the filter costs detail, so a small gate
predicts, per image, the share of the filtered image to blend in from statistics of the input (its noise) and of
the restoration. The Predictor runs the stage once per image after the tiles (``global_stage``), after the
coarse pass and before the other whole-image stages.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.global_sharpen import N_FEATURES as N_DETAIL_FEATURES, detail_features

RADIUS = 1  # 3x3 windows: on colour texture that does not follow the luma (sand) 5x5 ones cost up to 1.8 dB
EPS = 10 / 255**2  # the guided filter's regulariser on the [0, 1] scale: luma steps below about 3 levels are flat
SHARE_LOGIT_SHIFT = 0.0  # the untrained gate blends in half of the filtered image
# JFIF colour transform (full range, no offsets: only differences matter here)
RGB_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
YCC_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def _colour_transform(x: torch.Tensor, matrix) -> torch.Tensor:
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("oc,bchw->bohw", m, x)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over (2 radius + 1)² windows of (B,C,H,W), mirrored at the borders (replicated below 2 pixels)."""
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    size = 2 * radius + 1  # rows then columns: O(size) per pixel, not O(size²)
    padded = F.pad(x, (radius,) * 4, mode=mode)
    return F.avg_pool2d(F.avg_pool2d(padded, (1, size), stride=1), (size, 1), stride=1)


def guided_filter(source: torch.Tensor, guide: torch.Tensor, radius: int = RADIUS, eps: float = EPS) -> torch.Tensor:
    """Guided filter of ``source`` (B,C,H,W) by a one-channel ``guide`` (B,1,H,W): per window the least-squares
    ``a·guide + b`` with ridge ``eps`` on ``a``, the coefficients averaged over the windows covering each pixel."""
    mean_g, mean_s = box_mean(guide, radius), box_mean(source, radius)
    var_g = box_mean(guide * guide, radius) - mean_g * mean_g
    a = (box_mean(guide * source, radius) - mean_g * mean_s) / (var_g + eps)
    b = mean_s - a * mean_g
    return box_mean(a, radius) * guide + box_mean(b, radius)


def smooth_chroma(rgb: torch.Tensor, radius: int = RADIUS, eps: float = EPS) -> torch.Tensor:
    """(B,3,H,W) RGB -> the same image with Cb and Cr guided-filtered by its luma; the luma is unchanged."""
    x = rgb.float()
    ycc = _colour_transform(x, RGB_TO_YCC)
    y = ycc[:, :1]
    smoothed = torch.cat([y, guided_filter(ycc[:, 1:], y, radius, eps)], dim=1)
    return _colour_transform(smoothed, YCC_TO_RGB).to(rgb.dtype)


def chroma_features(degraded: torch.Tensor, restored: torch.Tensor, smoothed: torch.Tensor) -> torch.Tensor:
    """(B, N_FEATURES) statistics for the gate: :func:`~anyrestore.archs.global_sharpen.detail_features` of the
    input (its noise and blur), and on a log scale the fine chroma and luma energy of the restoration (mean absolute
    difference to the 3x3 box mean) and the mean square change the filter makes."""
    ycc = _colour_transform(restored.float(), RGB_TO_YCC)
    fine = (ycc - box_mean(ycc, 1)).abs().mean(dim=(2, 3))  # (B, 3)
    change = (smoothed.float() - restored.float()).pow(2).mean(dim=(1, 2, 3))
    own = torch.stack([fine[:, 0], fine[:, 1:].mean(dim=1), change], dim=1)
    return torch.cat([detail_features(degraded), torch.log(own + 1e-7)], dim=1)


N_FEATURES = N_DETAIL_FEATURES + 3


class ChromaDenoise(nn.Module):
    """Blend a predicted share of :func:`smooth_chroma` into the restored image (see the module).

    Args:
        hidden: width of the gate's two hidden layers.
    """

    def __init__(self, *, hidden: int = 16) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                  nn.Linear(hidden, 1))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.constant_(self.gate[-1].bias, SHARE_LOGIT_SHIFT)
        # the gate's inputs are standardised with the training set's statistics (set_feature_statistics)
        self.register_buffer("feature_shift", torch.zeros(N_FEATURES))
        self.register_buffer("feature_scale", torch.ones(N_FEATURES))

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Standardise the gate's inputs by the mean and standard deviation of training ``features``."""
        self.feature_shift.copy_(features.float().mean(dim=0))
        self.feature_scale.copy_(features.float().std(dim=0).clamp_min(1e-6))

    def share(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N_FEATURES) -> the share (B,) of the filtered image to blend in."""
        return torch.sigmoid(self.gate((features.float() - self.feature_shift) / self.feature_scale)[:, 0])

    def prepare(self, degraded: torch.Tensor, restored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate's features (B, N_FEATURES) and the filtered images (B,3,H,W)."""
        smoothed = smooth_chroma(restored)
        return chroma_features(degraded, restored, smoothed), smoothed

    @staticmethod
    def blend(restored: torch.Tensor, smoothed: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        return restored + share.view(-1, 1, 1, 1).to(restored.dtype) * (smoothed - restored)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        features, smoothed = self.prepare(degraded, restored)
        return self.blend(restored, smoothed, self.share(features))
