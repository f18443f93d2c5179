"""Noise ops on (B,C,H,W) float images in [0,1] with one parameter value per sample.

Random draws are made sample by sample from that sample's generator, so a batched call equals a loop of
single-sample calls given the same generators.
"""
from __future__ import annotations

import torch

from anyrestore.degradations._util import GeneratorArg, check_image, generators, per_sample, rand

QUANTIZE_MODES = ("none", "round", "truncate")


def _normal(img: torch.Tensor, gens) -> torch.Tensor:
    """Standard normal noise shaped like ``img``, sample i drawn from ``gens[i]`` (filled in place, no copies)."""
    device = gens[0].device if gens and gens[0] is not None else torch.device("cpu")
    noise = torch.empty(img.shape, dtype=torch.float32, device=device)
    for i, g in enumerate(gens):
        noise[i].normal_(generator=g)
    return noise.to(device=img.device, dtype=img.dtype)


def _quantize(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "none":
        return x
    if mode == "round":
        return torch.round(x * 255.0) / 255.0
    if mode == "truncate":
        return torch.floor(x * 255.0) / 255.0
    raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {mode!r}")


def gaussian_noise(img: torch.Tensor, *, sigma, generator: GeneratorArg = None, quantize: str = "none",
                   clip: bool = True) -> torch.Tensor:
    """Add i.i.d. N(0, sigma²) noise per pixel and channel; ``sigma`` is on the 0–255 scale.

    Args:
        img: (B,C,H,W) float in [0,1].
        sigma: scalar or (B,) noise standard deviation in 0–255 units.
        generator: one ``torch.Generator`` (shared, drawn sample by sample) or a list of B generators.
        quantize: "none", "round" (to the nearest 1/255) or "truncate" (floor, as ``astype(uint8)`` does; RAM
            and PromptIR training noise).
        clip: clip to [0,1] (always done before quantising).

    The value is computed on ``v = clip(255·img)`` in float32 (RAM's order), so truncation may lower a pixel
    that round-trips to k − ε by one level, as the reference code does.

    Example:
        >>> x = torch.full((1, 3, 8, 8), 0.5)
        >>> y = gaussian_noise(x, sigma=25.0, generator=torch.Generator().manual_seed(0))
        >>> y.shape
        torch.Size([1, 3, 8, 8])
    """
    check_image(img)
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    b = img.shape[0]
    s = per_sample(sigma, b, name="sigma", device=img.device, dtype=img.dtype)
    if (s < 0).any():
        raise ValueError("sigma must be >= 0")
    gens = generators(generator, b)
    v = _normal(img, gens).mul_(s.view(b, 1, 1, 1))
    v.add_(torch.clamp(img * 255.0, 0.0, 255.0))
    if clip or quantize != "none":
        v.clamp_(0.0, 255.0)
    if quantize == "truncate":
        v.floor_()
    elif quantize == "round":
        v.round_()
    return v.div_(255.0)


def poisson_noise(img: torch.Tensor, *, peak, generator: GeneratorArg = None) -> torch.Tensor:
    """Shot noise: ``Poisson(img·peak) / peak`` (variance = img / peak, i.e. proportional to intensity).

    ``peak`` (scalar or (B,)) is the photon count at intensity 1; smaller is noisier.
    """
    check_image(img)
    b = img.shape[0]
    p = per_sample(peak, b, name="peak", device=img.device, dtype=img.dtype)
    if (p <= 0).any():
        raise ValueError("peak must be > 0")
    gens = generators(generator, b)
    rate = img.clamp(0.0, 1.0) * p.view(b, 1, 1, 1)
    out = []
    for i, g in enumerate(gens):
        r = rate[i].to("cpu" if g is None else g.device)
        out.append(torch.poisson(r, generator=g).to(img.device))
    return (torch.stack(out) / p.view(b, 1, 1, 1)).clamp(0.0, 1.0)


def salt_pepper_noise(img: torch.Tensor, *, density, salt_ratio=0.5, generator: GeneratorArg = None) -> torch.Tensor:
    """Set a fraction ``density`` of pixels (all channels together) to 1 (salt) or 0 (pepper).

    Each pixel is hit with probability ``density``; a hit pixel is salt with probability ``salt_ratio``.
    """
    check_image(img)
    b, c, h, w = img.shape
    d = per_sample(density, b, name="density", device=img.device, dtype=img.dtype)
    r = per_sample(salt_ratio, b, name="salt_ratio", device=img.device, dtype=img.dtype)
    if ((d < 0) | (d > 1) | (r < 0) | (r > 1)).any():
        raise ValueError("density and salt_ratio must be in [0,1]")
    gens = generators(generator, b)
    u = torch.stack([rand((2, 1, h, w), g, img.device).to(img.dtype) for g in gens])  # (B,2,1,H,W)
    hit = u[:, 0] < d.view(b, 1, 1, 1)
    salt = u[:, 1] < r.view(b, 1, 1, 1)
    out = img.clone()
    out = torch.where(hit & salt, torch.ones_like(out), out)
    return torch.where(hit & ~salt, torch.zeros_like(out), out)


def speckle_noise(img: torch.Tensor, *, sigma, generator: GeneratorArg = None) -> torch.Tensor:
    """Multiplicative noise ``img·(1 + n)``, n ~ N(0, sigma²) per pixel and channel (sigma on the [0,1] scale)."""
    check_image(img)
    b = img.shape[0]
    s = per_sample(sigma, b, name="sigma", device=img.device, dtype=img.dtype)
    if (s < 0).any():
        raise ValueError("sigma must be >= 0")
    gens = generators(generator, b)
    noise = _normal(img, gens)
    return (img * (1.0 + noise * s.view(b, 1, 1, 1))).clamp(0.0, 1.0)


def camera_noise(img: torch.Tensor, *, shot, read, generator: GeneratorArg = None,
                 quantize: str = "round") -> torch.Tensor:
    """Signal-dependent sensor noise: variance ``shot·x + read²`` per pixel (heteroscedastic Gaussian model).

    Args:
        shot: scalar or (B,) shot-noise gain (variance per unit intensity, [0,1] scale), e.g. 1e-3 … 2e-2.
        read: scalar or (B,) read-noise standard deviation ([0,1] scale), e.g. 1e-3 … 2e-2.
        quantize: the result is quantised like an 8-bit camera output by default.
    """
    check_image(img)
    b = img.shape[0]
    k = per_sample(shot, b, name="shot", device=img.device, dtype=img.dtype)
    r = per_sample(read, b, name="read", device=img.device, dtype=img.dtype)
    if (k < 0).any() or (r < 0).any():
        raise ValueError("shot and read must be >= 0")
    gens = generators(generator, b)
    noise = _normal(img, gens)
    var = k.view(b, 1, 1, 1) * img.clamp(0.0, 1.0) + r.view(b, 1, 1, 1) ** 2
    return _quantize((img + noise * var.sqrt()).clamp(0.0, 1.0), quantize)
