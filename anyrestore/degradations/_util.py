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


FFT_MIN_KERNEL = 25  # from this kernel size on the FFT beats direct grouped conv2d on CPU (measured, 128² images)


def filter2d(img: torch.Tensor, kernels: torch.Tensor, *, border: str = "reflect") -> torch.Tensor:
    """Convolve each sample with its own kernel (B,K,K); borders reflect-101 by default.

    Small kernels use one grouped conv2d (every channel of sample i uses kernel i); kernels of
    ``FFT_MIN_KERNEL`` taps or more use the FFT on the padded image, which gives the same result up to float
    rounding (~1e-6). The path depends only on K, so batched and single-sample calls compute the same thing.
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
    kernels = kernels.to(img.device, img.dtype)
    if k >= FFT_MIN_KERNEL:
        hp, wp = h + 2 * r, w + 2 * r
        # kernel centred at the origin (circularly), so the circular convolution of the padded image is exact
        # in the central h x w window
        kpad = torch.zeros(b, hp, wp, device=img.device, dtype=img.dtype)
        kpad[:, :k, :k] = kernels
        kpad = torch.roll(kpad, shifts=(-r, -r), dims=(1, 2))
        x = x.reshape(b, c, hp, wp)
        # one sample at a time: batched FFTs may vectorise across samples and round differently
        y = [torch.fft.irfft2(torch.fft.rfft2(x[i]) * torch.fft.rfft2(kpad[i]), s=(hp, wp)) for i in range(b)]
        return torch.stack(y)[:, :, r:r + h, r:r + w].contiguous()
    # (B,K,K) -> (B*C,1,K,K); conv2d correlates, so flip to convolve
    weight = kernels.flip(-1, -2).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


def filter_separable(img: torch.Tensor, kernels_1d: torch.Tensor, *, border: str = "reflect") -> torch.Tensor:
    """Filter sample i with the separable kernel outer(k_i, k_i), k_i = kernels_1d[i] (odd length, symmetric)."""
    b, c, h, w = img.shape
    k = kernels_1d.shape[-1]
    r = k // 2
    mode = "replicate" if border == "reflect" and (r >= h or r >= w) else border
    weight = kernels_1d.to(img.device, img.dtype).repeat_interleave(c, dim=0).view(b * c, 1, 1, k)
    x = F.pad(img.reshape(1, b * c, h, w), (r, r, r, r), mode=mode) if r else img.reshape(1, b * c, h, w)
    x = F.conv2d(x, weight, groups=b * c)
    x = F.conv2d(x, weight.transpose(2, 3), groups=b * c)
    return x.reshape(b, c, h, w)


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
