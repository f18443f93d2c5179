"""A whole-image sharpening step whose strength is estimated from the degraded input: the default model's deblurring
boost.

The compact U-Net of the default model removes noise well but sharpens little. Blur, though, is visible in
statistics of the *whole* input: how much detail survives at each scale. This stage reads those statistics at the
input's native resolution and predicts one correction for the restored image ``y``, in one of two modes:

* ``"unsharp"``: an unsharp mask ``y + a · (y − G_s(y))`` with ``a ≥ 0`` and ``s`` in [0.5, 3] pixels;
* ``"wiener"``: a share ``t`` in [0, 1] of a Wiener deconvolution of ``y`` by a Gaussian kernel of predicted sigma
  ``s`` (gradient prior of predicted weight ``p``), ``y + t · (W_{s,p}(y) − y)``. A deconvolution undoes a Gaussian
  blur where an unsharp mask only approximates its inverse to first order.

Noisy and JPEG inputs keep ``a`` (or ``t``) near 0: their fine-scale energy is high. The Predictor runs the stage
once per image after the tiles (``global_stage``), like the exposure curve.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from anyrestore.archs.blocks import centre_crop_at_most
from anyrestore.archs.motion_deblur import SKIP_BELOW, wiener_deconvolve

SCALES = (0.5, 1.0, 2.0, 4.0)
MAX_SIDE = 768  # statistics from a centred crop at most this large: native resolution, bounded cost
SIGMA_RANGE = (0.5, 3.0)
PRIOR_RANGE = (1e-3, 1e-1)  # Wiener mode: the gradient-prior weight (a log-uniform range)
MODES = ("unsharp", "wiener")
SHARE_LOGIT_SHIFT = 4.0  # Wiener mode: the untrained head blends in about 2 % of the deconvolution
WIENER_KERNEL = 2 * math.ceil(3 * SIGMA_RANGE[1]) + 1  # every sigma of the range, cut at 3 sigma like the degradation


def gaussian_kernels(sigma: torch.Tensor, size: int = WIENER_KERNEL) -> torch.Tensor:
    """(B,) sigmas -> (B, size, size) normalised isotropic Gaussian kernels, differentiable in sigma."""
    offsets = torch.arange(size, device=sigma.device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (offsets[None] / sigma.double().view(-1, 1)) ** 2)
    g = g / g.sum(dim=1, keepdim=True)
    return g[:, :, None] * g[:, None, :]


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) with one (differentiable) sigma per image, reflect-padded."""
    b, c, h, w = x.shape
    radius = min(int(math.ceil(3 * float(sigma.detach().max()))), max(1, min(h, w) - 1))
    mode = "reflect" if radius < min(h, w) else "replicate"  # a 1-pixel side cannot be mirrored
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.to(x.dtype).view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    weight = kernel.repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode=mode)
    y = F.conv2d(y, weight.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, weight.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def detail_features(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> (B, 3*len(SCALES)+1) statistics of the grey image at native resolution: log mean
    absolute band-pass energy per scale, log ratios of neighbouring bands, log 90th-percentile of the finest band,
    and the 8x8 block-edge excess of JPEG."""
    x = centre_crop_at_most(image.float(), MAX_SIDE)
    grey = x.mean(dim=1, keepdim=True)
    levels = [grey] + [gaussian_blur(grey, torch.full((len(x),), s, device=x.device)) for s in SCALES]
    bands = [(a - b).abs() for a, b in zip(levels[:-1], levels[1:])]
    energy = torch.stack([band.mean(dim=(1, 2, 3)) for band in bands], dim=1) + 1e-5
    log_energy = energy.log()
    ratios = log_energy[:, :-1] - log_energy[:, 1:]
    fine = bands[0].flatten(1)
    fine = fine[:, :: max(1, fine.shape[1] // 65536)]  # torch.quantile's input stays small
    levels_q = torch.tensor([0.9, 0.99], dtype=fine.dtype, device=fine.device)
    q90, peaks = torch.quantile(fine, levels_q, dim=1)[:, :, None]
    dx = (grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=(1, 2))  # (B, W-1)
    if dx.shape[1] >= 8:
        blockiness = (dx[:, 7::8].mean(dim=1, keepdim=True) + 1e-5).log() - (dx.mean(dim=1, keepdim=True) + 1e-5).log()
    else:  # narrower than one JPEG block
        blockiness = torch.zeros(len(x), 1, device=x.device)
    return torch.cat([log_energy, ratios, (q90 + 1e-5).log(), (peaks + 1e-5).log(), blockiness,
                      (grey.mean(dim=(1, 2, 3))[:, None] + 1e-3).log()], dim=1)


N_FEATURES = 2 * len(SCALES) - 1 + 4


class GlobalSharpen(nn.Module):
    """Predict one sharpening of the restored image per image from :func:`detail_features` and apply it.

    Args:
        hidden: width of the two hidden layers.
        mode: ``"unsharp"`` (amount, radius) or ``"wiener"`` (share, kernel sigma, prior weight); see the module.
    """

    def __init__(self, *, hidden: int = 64, mode: str = "unsharp") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown sharpen mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode = mode
        outputs = 2 if mode == "unsharp" else 3
        self.mlp = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, outputs))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features (B, F) -> unsharp: amount (B,) >= 0 (about 0.0025 untrained) and radius sigma (B,) in
        SIGMA_RANGE; wiener: share (B,) in [0, 1] (about 0.018 untrained), kernel sigma (B,) in SIGMA_RANGE and
        prior weight (B,) in PRIOR_RANGE (1e-2 untrained)."""
        out = self.mlp(features)
        low, high = SIGMA_RANGE
        sigma = low + (high - low) * torch.sigmoid(out[:, 1])
        if self.mode == "unsharp":
            return F.softplus(out[:, 0] - 6.0), sigma
        share = torch.sigmoid(out[:, 0] - SHARE_LOGIT_SHIFT)
        log_low, log_high = (math.log(v) for v in PRIOR_RANGE)
        prior = torch.exp(log_low + (log_high - log_low) * torch.sigmoid(out[:, 2]))
        return share, sigma, prior

    def share_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Wiener mode: the logits of the shares (B,), for training the gate on its own."""
        return self.mlp(features)[:, 0] - SHARE_LOGIT_SHIFT

    def apply(self, restored: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
        y = restored.float()
        if self.mode == "unsharp":
            amount, sigma = parameters
            sharpened = y + amount.view(-1, 1, 1, 1) * (y - gaussian_blur(y, sigma))
        else:
            share, sigma, prior = parameters
            if not share.requires_grad and float(share.max()) < SKIP_BELOW:  # moves no 8-bit level: skip the FFTs
                return restored
            deconvolved = wiener_deconvolve(y, gaussian_kernels(sigma), prior)
            sharpened = y + share.view(-1, 1, 1, 1) * (deconvolved - y)
        return sharpened.to(restored.dtype)

    def yield_to_motion(self, parameters: tuple[torch.Tensor, ...], motion_share: torch.Tensor | None
                        ) -> tuple[torch.Tensor, ...]:
        """Wiener mode: scale the share by ``1 - motion_share`` (B,), the share of the motion stage's deconvolution
        blended into the same image just before. Deconvolving a Gaussian after a motion deconvolution over-sharpens
        (session 13: -1.85 dB on a held-out photo). The unsharp mode was trained and shipped without this rule."""
        if self.mode != "wiener" or motion_share is None:
            return parameters
        share, *rest = parameters
        return (share * (1 - motion_share.to(share)), *rest)

    features = staticmethod(detail_features)
    features_from = "degraded"  # the input the statistics are taken of

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor,
                motion_share: torch.Tensor | None = None) -> torch.Tensor:
        parameters = self.from_features(detail_features(degraded))
        return self.apply(restored, *self.yield_to_motion(parameters, motion_share))
