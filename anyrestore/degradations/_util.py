"""Small shared helpers for the degradation ops (shape checks, per-sample parameters and generators, kernels)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def check_image(img: torch.Tensor, name: str = "img", channels: int | None = None) -> None:
    """Raise ValueError unless ``img`` is a floating (B,C,H,W) tensor (optionally with C == channels)."""
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name} must be a (B,C,H,W) tensor, got {got}")
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor in [0,1], got dtype {img.dtype}")
    if channels is not None and img.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {img.shape[1]}")


def per_sample(value, batch: int, *, name: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """Broadcast a scalar, sequence or (B,) tensor parameter to a (B,) tensor."""
    t = torch.as_tensor(value, dtype=dtype).flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"parameter {name!r} must be a scalar or have {batch} values (one per sample), got {t.numel()}")
    return t.to(device=device).clone()


def generators(generator: GeneratorArg, batch: int) -> list[torch.Generator | None]:
    """One generator per sample: a single generator is shared (draws happen sample by sample, in order)."""
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * batch
    gens = list(generator)
    if len(gens) != batch:
        raise ValueError(f"expected {batch} generators (one per sample), got {len(gens)}")
    return gens


def randn(shape, gen: torch.Generator | None, device) -> torch.Tensor:
    gen_device = gen.device if gen is not None else torch.device("cpu")
    return torch.randn(shape, generator=gen, device=gen_device).to(device)


def rand(shape, gen: torch.Generator | None, device) -> torch.Tensor:
    gen_device = gen.device if gen is not None else torch.device("cpu")
    return torch.rand(shape, generator=gen, device=gen_device).to(device)


def center_pad_kernels(kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack odd square kernels of different sizes into (B,K,K), zero-padding the smaller ones around the centre."""
    size = max(k.shape[-1] for k in kernels)
    out = []
    for k in kernels:
        p = (size - k.shape[-1]) // 2
        out.append(F.pad(k, (p, p, p, p)))
    return torch.stack(out)


def filter2d(img: torch.Tensor, kernels: torch.Tensor, *, border: str = "reflect") -> torch.Tensor:
    """Correlate each sample with its own kernel (B,K,K) via one grouped conv2d; borders reflect-101 by default.

    The kernel is flipped first, so the result is a true convolution (identical for symmetric kernels).
    """
    b, c, h, w = img.shape
    k = kernels.shape[-1]
    if kernels.dim() != 3 or kernels.shape[0] != b or k % 2 == 0 or kernels.shape[-2] != k:
        raise ValueError(f"kernels must be (B,K,K) with odd K and B={b}, got {tuple(kernels.shape)}")
    r = k // 2
    mode = border
    if border == "reflect" and (r >= h or r >= w):
        mode = "replicate"  # reflect padding needs the pad to be smaller than the image side
    x = F.pad(img.reshape(1, b * c, h, w), (r, r, r, r), mode=mode) if r else img.reshape(1, b * c, h, w)
    # (B,K,K) -> (B*C,1,K,K): every channel of sample i uses kernel i
    weight = kernels.flip(-1, -2).to(img.dtype).to(img.device).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


def gaussian_1d(size: int, sigma: float, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of a (N,1,H,W) field with reflect/replicate borders."""
    if sigma <= 0:
        return field
    radius = max(1, int(3 * sigma))
    g = gaussian_1d(2 * radius + 1, sigma, device=field.device).to(field.dtype)
    h, w = field.shape[-2:]
    mode = "reflect" if radius < min(h, w) else "replicate"
    x = F.pad(field, (radius, radius, 0, 0), mode=mode)
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=mode)
    return F.conv2d(x, g.view(1, 1, -1, 1))
