"""A coarse pass of the local restorer over the whole image: the default model's haze stage for large photos.

The default model's U-Net was trained on 96-128 px crops, and the synthetic haze of its training set spans the crop
it is given: every training crop holds a whole ramp from near to far. In a large photo the same haze spans the whole
frame, each tile sees an almost uniform veil, and the U-Net leaves most of it in place (held-out photos, haze β 1.5:
+10.9 dB on 256² crops, +1.7 dB whole).

This stage shows the U-Net the whole image at its training scale: the input area-downscaled to about ``side`` px on
the shorter side. It compares that coarse restoration ``c`` with the full-resolution output ``y`` downscaled the same
way, ``d``, and fits per window ``c ≈ a·d + b_ch``: one contrast gain ``a`` shared by the channels and an offset per
channel, regularised towards the identity (``a`` -> 1 where ``d`` is flat). The fit is box-filtered, resized to
full resolution and applied as ``a·y + b``, so the output keeps the full-resolution detail of ``y``.

Only a lifted veil is carried over. Haze ``I = J·t + A·(1 − t)`` is undone by ``J = a·I + b`` with ``a = 1/t ≥ 1``
and ``b = −A·(a − 1) ≤ 0``, so the stage clamps ``a ≥ 1`` and ``b ≤ 0`` and applies the fit only when the airlight it
implies, ``A_ch = −Σb_ch / Σ(a − 1)``, is bright (≥ ``min_airlight`` on average) and the veil ``1 − 1/a`` covers at
least ``min_veil`` of the image on average. The coarse passes of rain, snow, blur, low light and JPEG differ from
the fine one too, but their fits imply dark airlights (0.0-0.5 on the held-out photos), and they are left alone.
Images whose shorter side is below ``min_scale·side`` are already at the U-Net's scale and pass unchanged.
The stage has no weights.

The stage also guards against the opposite error (session 33). A tile sees only its own part of a large photo, and a
smooth, bright, low-contrast tile (out-of-focus flowers at 2304×1440, blurred once more) can look hazy to the
U-Net: it "dehazed" one 256² tile of a held-out photo to a dark blue blotch (−13.5 dB on the photo). Where the
coarse restoration keeps a bright veil that the tiles removed (the fit ``c ≈ a·d + b`` with ``a < 1``, ``b > 0``),
the tiles darkened the region, and the input has too little fine detail to explain the change (the local change
of the mean is more than ``unexplained`` times the input's local high-pass deviation: rain and snow removal, which
also darken, stay far below), the veil is put back (``restore_veil``). Ramps rather than thresholds keep the
last three conditions smooth; the veil must imply a bright airlight (``min_airlight``), as for a lifted one.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.chroma_denoise import box_mean


class CoarsePass(nn.Module):
    """Carry the large-scale correction of a downscaled restoration to the full-resolution output.

    Args:
        side: shorter side of the coarse pass in pixels (the U-Net's training scale).
        min_scale: run only on images whose shorter side is at least ``min_scale * side``.
        radius: box radius of the local fit, in coarse pixels.
        eps: ridge of the fit, towards ``a = 1``.
        min_airlight: smallest mean airlight (0-1) the fit must imply.
        min_veil: smallest mean veil ``1 − 1/a``.
        restore_veil: put back a bright veil the tiles removed where the coarse pass keeps it (see the module).
        veil_radius: box radius of that fit, in coarse pixels (a tile's blotch is smaller than a haze ramp).
        added_veil, darkening, unexplained: the (start, full) ramps of the veil put back ``1 − a``, of how much
            darker the tiles left the region than the coarse pass (0-1 levels), and of the mean's change over the
            input's local high-pass deviation.
    """

    def __init__(self, *, side: int = 192, min_scale: float = 2.0, radius: int = 8, eps: float = 1e-3,
                 min_airlight: float = 0.6, min_veil: float = 0.005, restore_veil: bool = True,
                 veil_radius: int = 4, added_veil: tuple[float, float] = (0.01, 0.05),
                 darkening: tuple[float, float] = (0.01, 0.03),
                 unexplained: tuple[float, float] = (30.0, 60.0)) -> None:
        super().__init__()
        self.side, self.min_scale, self.radius, self.eps = side, min_scale, radius, eps
        self.min_airlight, self.min_veil = min_airlight, min_veil
        self.restore_veil, self.veil_radius = restore_veil, veil_radius
        self.added_veil, self.darkening, self.unexplained = added_veil, darkening, unexplained

    def coarse_size(self, height: int, width: int) -> tuple[int, int] | None:
        """The coarse pass's (H, W) for an image of this size, or None when the image is too small for one."""
        scale = min(height, width) / self.side
        if scale < self.min_scale:
            return None
        return max(1, round(height / scale)), max(1, round(width / scale))

    def _local_fit(self, fine: torch.Tensor, coarse: torch.Tensor, radius: int, lifts: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-filtered ``coarse ≈ gain·fine + offset`` (one gain shared by the channels, ridge ``eps`` towards 1):
        ``lifts`` clamps to a lifted veil (gain >= 1, offsets <= 0), else to a kept one (gain <= 1, offsets >= 0)."""
        mean_f, mean_c = box_mean(fine, radius), box_mean(coarse, radius)
        cov = (box_mean(fine * coarse, radius) - mean_f * mean_c).sum(1, keepdim=True)
        var = (box_mean(fine * fine, radius) - mean_f * mean_f).sum(1, keepdim=True)
        gain = (cov + self.eps) / (var + self.eps)
        gain = gain.clamp_min(1.0) if lifts else gain.clamp_max(1.0)
        offset = mean_c - gain * mean_f
        offset = offset.clamp_max(0.0) if lifts else offset.clamp_min(0.0)
        return box_mean(gain, radius), box_mean(offset, radius)

    def fit(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel gain (B,1,h,w) >= 1 and offsets (B,C,h,w) <= 0 with ``coarse ≈ gain·fine + offset``."""
        return self._local_fit(fine, coarse, self.radius, lifts=True)

    def fit_kept_veil(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel gain (B,1,h,w) <= 1 and offsets (B,C,h,w) >= 0 with ``coarse ≈ gain·fine + offset``: the veil
        the coarse restoration keeps where the fine one removed it (radius ``veil_radius``)."""
        return self._local_fit(fine, coarse, self.veil_radius, lifts=False)

    def false_lift_weight(self, degraded: torch.Tensor, fine: torch.Tensor, coarse: torch.Tensor,
                          gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """(B,1,h,w) in [0, 1]: how surely the tiles lifted a veil the whole image does not have (see the
        module); ``fine`` and ``coarse`` at the coarse size, ``degraded`` at full size."""
        def ramp(value: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
            return ((value - bounds[0]) / (bounds[1] - bounds[0])).clamp(0.0, 1.0)

        r, size = self.veil_radius, fine.shape[-2:]
        veil = 1 - gain
        airlight = (offset / veil.clamp_min(1e-3)).mean(1, keepdim=True)
        mean_f, mean_c = box_mean(fine, r), box_mean(coarse, r)
        darker = box_mean(ramp((mean_c - mean_f).mean(1, keepdim=True), self.darkening), r)
        weight = ramp(veil, self.added_veil) * (airlight >= self.min_airlight) * darker
        if not bool(weight.max() > 0):  # the usual case: no full-resolution pass over the input needed
            return weight
        grey = degraded.float().mean(1, keepdim=True)
        high_pass = grey - F.avg_pool2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        deviation = box_mean(F.interpolate(high_pass ** 2, size=size, mode="area"), r).sqrt()
        mean_in = box_mean(F.interpolate(degraded.float(), size=size, mode="area"), r)
        change = (mean_in - mean_f).abs().mean(1, keepdim=True)
        return weight * ramp(change / (deviation + 1e-3), self.unexplained)

    def veil_lifted(self, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the fit looks like haze removal (a bright implied airlight over enough of the image)."""
        lift = (gain - 1).flatten(1).sum(1)
        airlight = -offset.flatten(2).sum(2) / lift.clamp_min(1e-6).unsqueeze(1)
        veil = (1 - 1 / gain).flatten(1).mean(1)
        return (airlight.mean(1) >= self.min_airlight) & (veil >= self.min_veil)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor,
                restorer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``restored`` (B,C,H,W), corrected where the coarse restoration of ``degraded`` lifts a veil.
        ``restorer`` is the local network (any input size)."""
        size = self.coarse_size(*degraded.shape[-2:])
        if size is None:
            return restored
        coarse = restorer(F.interpolate(degraded.float(), size=size, mode="area")).float().clamp(0.0, 1.0)
        fine = F.interpolate(restored.float(), size=size, mode="area")
        gain, offset = self.fit(fine, coarse)
        keep = self.veil_lifted(gain, offset)
        full = restored.shape[-2:]
        out = restored
        if keep.any():
            up_gain = F.interpolate(gain, size=full, mode="bilinear", align_corners=False)
            up_offset = F.interpolate(offset, size=full, mode="bilinear", align_corners=False)
            corrected = (up_gain * restored.float() + up_offset).clamp(0.0, 1.0).to(restored.dtype)
            out = torch.where(keep.view(-1, 1, 1, 1), corrected, restored)
        if not self.restore_veil or keep.all():
            return out
        gain, offset = self.fit_kept_veil(fine, coarse)
        weight = self.false_lift_weight(degraded, fine, coarse, gain, offset) * ~keep.view(-1, 1, 1, 1)
        if not bool(weight.max() > 0):
            return out
        weight, gain, offset = (F.interpolate(t, size=full, mode="bilinear", align_corners=False)
                                for t in (weight, gain, offset))
        veiled = gain * out.float() + offset
        return (out.float() + weight * (veiled - out.float())).clamp(0.0, 1.0).to(restored.dtype)
