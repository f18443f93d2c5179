"""Illumination degradations: Retinex-style low light and over-exposure."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from anyrestore.degradations._util import GeneratorArg, check_image, per_sample
from anyrestore.degradations.noise import gaussian_noise


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)


def illumination(img: torch.Tensor, *, radius: int = 1, eps: float = 0.01) -> torch.Tensor:
    """Illumination map L (B,1,H,W): per-pixel RGB max refined by a guided filter (window 2r+1, eps) whose guide is
    the grey image. Stays within [min, max] of the RGB max up to the filter's small overshoot (clamped to [0,1])."""
    check_image(img)
    p = img.amax(dim=1, keepdim=True)
    guide = img.mean(dim=1, keepdim=True)
    mean_i, mean_p = _box(guide, radius), _box(p, radius)
    cov = _box(guide * p, radius) - mean_i * mean_p
    var = _box(guide * guide, radius) - mean_i**2
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return (_box(a, radius) * guide + _box(b, radius)).clamp(0.0, 1.0)


def low_light(img: torch.Tensor, *, gamma, scale=1.0, noise_sigma=0.0, generator: GeneratorArg = None) -> torch.Tensor:
    """Retinex darkening: ``R = I / (L + 1e-7)``, ``LQ = R · scale · (L + 1e-7)^gamma`` (+ optional Gaussian noise).

    With ``gamma = 1`` the mean intensity is multiplied by exactly ``scale``; ``gamma > 1`` darkens dim regions
    more than bright ones (UniRestorer: gamma in [1, 3], no noise in this step).

    Args:
        gamma: scalar or (B,) exponent ≥ 1 applied to the illumination.
        scale: scalar or (B,) global exposure factor in (0, 1].
        noise_sigma: scalar or (B,) Gaussian noise sigma (0–255 scale) added after darkening (0 = none).
    """
    check_image(img)
    b = img.shape[0]
    g = per_sample(gamma, b, name="gamma", device=img.device, dtype=img.dtype).view(b, 1, 1, 1)
    s = per_sample(scale, b, name="scale", device=img.device, dtype=img.dtype).view(b, 1, 1, 1)
    if (g <= 0).any() or (s <= 0).any() or (s > 1).any():
        raise ValueError("low_light gamma must be > 0 and scale in (0, 1]")
    light = illumination(img) + 1e-7
    out = (img / light) * s * light**g
    out = out.clamp(0.0, 1.0)
    sig = per_sample(noise_sigma, b, name="noise_sigma", dtype=img.dtype)
    if (sig > 0).any():
        out = gaussian_noise(out, sigma=sig, generator=generator)
    return out


def over_exposure(img: torch.Tensor, *, ev) -> torch.Tensor:
    """Over-exposure by ``ev`` stops: ``clip(I · 2^ev)`` on linearised values (sRGB-like gamma 2.2), re-encoded."""
    check_image(img)
    b = img.shape[0]
    e = per_sample(ev, b, name="ev", device=img.device, dtype=img.dtype).view(b, 1, 1, 1)
    if (e < 0).any():
        raise ValueError("ev must be >= 0")
    linear = img.clamp(0.0, 1.0) ** 2.2
    return (linear * 2.0**e).clamp(0.0, 1.0) ** (1 / 2.2)
