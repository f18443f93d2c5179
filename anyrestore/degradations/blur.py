"""Blur kernels and batched blur ops (one kernel per sample, applied with a single grouped conv2d).

Every kernel is a (K,K) float32 tensor with odd K that sums to 1. Borders are reflect-101 (OpenCV's default).
"""
from __future__ import annotations

import math

import torch

from anyrestore.degradations._util import (GeneratorArg, check_image, filter2d,
                                           filter_separable, gaussian_1d, generators, per_sample, rand, randn)


def _odd_size(size: float, name: str = "kernel_size") -> int:
    k = int(round(float(size)))
    if k < 1 or k % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {size}")
    return k


def auto_size(extent: float) -> int:
    """Smallest odd size covering ±3·extent (used when a kernel size is not given)."""
    return 2 * max(1, math.ceil(3 * float(extent))) + 1


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """Gaussian kernel; isotropic when ``sigma_y`` is None or equal (outer product of the 1-D OpenCV Gaussian).

    ``theta`` (radians) rotates the ``sigma_x`` axis counter-clockwise from the image x axis.
    """
    k = _odd_size(size)
    if sigma_x <= 0 or (sigma_y is not None and sigma_y <= 0):
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma_x}, {sigma_y}")
    if sigma_y is None or sigma_y == sigma_x:
        g = gaussian_1d(k, float(sigma_x)).double()
        return torch.outer(g, g).float()
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    yy, xx = torch.meshgrid(-r, r, indexing="ij")  # y axis up so theta is counter-clockwise on screen
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy
    v = -s * xx + c * yy
    g = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (g / g.sum()).float()


def _splat(points: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly splat (N,2) points (x right, y up, relative to the centre) into a (size,size) kernel."""
    c = (size - 1) / 2
    col = points[:, 0].double() + c
    row = c - points[:, 1].double()
    k = torch.zeros(size * size, dtype=torch.float64)
    r0, c0 = row.floor(), col.floor()
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = r0 + dr, c0 + dc
            w = (1 - (row - rr).abs()) * (1 - (col - cc).abs())
            ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size) & (w > 0)
            k.index_add_(0, (rr[ok] * size + cc[ok]).long(), w[ok])
    k = k.view(size, size)
    return (k / k.sum()).float()


def motion_kernel(size: int, length: float, angle: float) -> torch.Tensor:
    """Linear motion: a centred segment of ``length`` pixels at ``angle`` degrees (counter-clockwise from x)."""
    k = _odd_size(size)
    if length < 0 or length > k:
        raise ValueError(f"motion length must be in [0, kernel_size={k}], got {length}")
    n = max(2, int(math.ceil(length * 8)) + 1)
    t = torch.linspace(-length / 2, length / 2, n, dtype=torch.float64)
    a = math.radians(angle)
    pts = torch.stack([t * math.cos(a), t * math.sin(a)], dim=1)
    return _splat(pts, k)


def trajectory_kernel(size: int, length: float, generator: torch.Generator | None = None,
                      steps: int = 64, inertia: float = 0.7) -> torch.Tensor:
    """Random camera-shake trajectory (a smooth random walk with momentum) rescaled to ``length`` pixels extent."""
    k = _odd_size(size)
    if length <= 0 or length > k:
        raise ValueError(f"trajectory length must be in (0, kernel_size={k}], got {length}")
    angle = float(rand((1,), generator, "cpu")) * 2 * math.pi
    kicks = randn((steps - 1, 2), generator, "cpu").double().tolist()
    vx, vy = math.cos(angle), math.sin(angle)
    pts = [(0.0, 0.0)]
    for kx, ky in kicks:
        vx, vy = inertia * vx + (1 - inertia) * kx, inertia * vy + (1 - inertia) * ky
        norm = max(math.hypot(vx, vy), 1e-12)
        vx, vy = vx / norm, vy / norm
        pts.append((pts[-1][0] + vx, pts[-1][1] + vy))
    p = torch.tensor(pts, dtype=torch.float64)
    p = p - (p.max(0).values + p.min(0).values) / 2
    extent = (p.max(0).values - p.min(0).values).max().clamp_min(1e-12)
    p = p * (length / extent)
    # densify so the splatted path has no gaps
    t = torch.linspace(0, 1, 8, dtype=torch.float64).view(1, 8, 1)
    dense = (p[:-1, None] + (p[1:] - p[:-1])[:, None] * t).reshape(-1, 2)
    return _splat(dense, k)


def disk_kernel(radius: float, size: int | None = None) -> torch.Tensor:
    """Defocus: a uniform disc of ``radius`` pixels with anti-aliased edges (8×8 super-sampling)."""
    if radius <= 0:
        raise ValueError(f"disk radius must be > 0, got {radius}")
    k = _odd_size(size) if size is not None else 2 * math.ceil(radius) + 1
    ss = 8
    r = (torch.arange(k * ss, dtype=torch.float64) + 0.5) / ss - k / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    inside = ((xx**2 + yy**2) <= radius**2).double()
    cover = inside.view(k, ss, k, ss).mean(dim=(1, 3))
    if cover.sum() == 0:
        cover[k // 2, k // 2] = 1.0
    return (cover / cover.sum()).float()


def sinc_kernel(size: int, omega_c: float) -> torch.Tensor:
    """Circular low-pass (2-D sinc / Airy) kernel with cut-off ``omega_c`` in radians per pixel (0 < ω ≤ π)."""
    from scipy.special import j1

    k = _odd_size(size)
    if not 0 < omega_c <= math.pi:
        raise ValueError(f"omega_c must be in (0, pi], got {omega_c}")
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d = torch.sqrt(xx**2 + yy**2)
    dd = d.clamp_min(1e-12).numpy()
    vals = torch.from_numpy(omega_c * j1(omega_c * dd) / (2 * math.pi * dd))
    vals[d == 0] = omega_c**2 / (4 * math.pi)
    return (vals / vals.sum()).float()


def apply_kernels(img: torch.Tensor, kernels, *, border: str = "reflect") -> torch.Tensor:
    """Convolve sample i with kernel i. ``kernels``: (B,K,K) tensor or a list of odd square kernels of any sizes.

    Samples are grouped by kernel size, so each is filtered with its own size (no zero taps) and the result does
    not depend on which other samples share the batch.
    """
    check_image(img)
    if isinstance(kernels, torch.Tensor):
        return filter2d(img, kernels, border=border)
    kernels = list(kernels)
    if len(kernels) != img.shape[0]:
        raise ValueError(f"expected {img.shape[0]} kernels, got {len(kernels)}")
    sizes = sorted({k.shape[-1] for k in kernels})
    if len(sizes) == 1:
        return filter2d(img, torch.stack(kernels), border=border)
    out = torch.empty_like(img)
    for size in sizes:
        idx = [i for i, k in enumerate(kernels) if k.shape[-1] == size]
        out[idx] = filter2d(img[idx], torch.stack([kernels[i] for i in idx]), border=border)
    return out


def gaussian_blur(img: torch.Tensor, *, sigma, kernel_size=None, sigma_y=None, theta=0.0) -> torch.Tensor:
    """Isotropic (``sigma_y`` None) or anisotropic Gaussian blur, one kernel per sample.

    Example:
        >>> x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> gaussian_blur(x, sigma=torch.tensor([1.0, 2.0]), kernel_size=15).shape
        torch.Size([2, 3, 32, 32])
    """
    check_image(img)
    b = img.shape[0]
    sx = per_sample(sigma, b, name="sigma", dtype=torch.float64)
    sy = per_sample(sigma_y, b, name="sigma_y", dtype=torch.float64) if sigma_y is not None else None
    th = per_sample(theta, b, name="theta", dtype=torch.float64)
    sizes = (per_sample(kernel_size, b, name="kernel_size", dtype=torch.float64) if kernel_size is not None
             else torch.tensor([auto_size(max(float(sx[i]), float(sy[i]) if sy is not None else 0)) for i in range(b)]))
    for i in range(b):
        _odd_size(float(sizes[i]))
        if sx[i] <= 0 or (sy is not None and sy[i] <= 0):
            raise ValueError(f"Gaussian sigma must be > 0, got {float(sx[i])}")
    if sy is None:
        # isotropic: separable (2K instead of K² multiply-adds per pixel), equal to the 2-D kernel up to float
        # rounding. The path depends only on the arguments' form, never on the batch's values, so a batched call
        # computes exactly what single-sample calls compute.
        out = torch.empty_like(img)
        for size in sorted({int(v) for v in sizes}):
            idx = [i for i in range(b) if int(sizes[i]) == size]
            k1 = torch.stack([gaussian_1d(size, float(sx[i])) for i in idx])
            out[idx] = filter_separable(img[idx], k1)
        return out
    kernels = [gaussian_kernel(int(sizes[i]), float(sx[i]), float(sy[i]), float(th[i])) for i in range(b)]
    return apply_kernels(img, kernels)


def motion_blur(img: torch.Tensor, *, length, angle, kernel_size=None) -> torch.Tensor:
    """Linear motion blur of ``length`` pixels at ``angle`` degrees per sample."""
    check_image(img)
    b = img.shape[0]
    ln = per_sample(length, b, name="length", dtype=torch.float64)
    an = per_sample(angle, b, name="angle", dtype=torch.float64)
    sizes = (per_sample(kernel_size, b, name="kernel_size", dtype=torch.float64) if kernel_size is not None
             else torch.tensor([2 * math.ceil(float(v) / 2) + 1 for v in ln]))
    return apply_kernels(img, [motion_kernel(int(sizes[i]), float(ln[i]), float(an[i])) for i in range(b)])


def trajectory_blur(img: torch.Tensor, *, length, kernel_size=None, generator: GeneratorArg = None) -> torch.Tensor:
    """Camera-shake blur along a random trajectory of ``length`` pixels extent (drawn from each sample's generator)."""
    check_image(img)
    b = img.shape[0]
    ln = per_sample(length, b, name="length", dtype=torch.float64)
    sizes = (per_sample(kernel_size, b, name="kernel_size", dtype=torch.float64) if kernel_size is not None
             else torch.tensor([2 * math.ceil(float(v) / 2) + 1 for v in ln]))
    gens = generators(generator, b)
    return apply_kernels(img, [trajectory_kernel(int(sizes[i]), float(ln[i]), gens[i]) for i in range(b)])


def defocus_blur(img: torch.Tensor, *, radius) -> torch.Tensor:
    """Defocus (disc) blur of ``radius`` pixels per sample."""
    check_image(img)
    b = img.shape[0]
    rad = per_sample(radius, b, name="radius", dtype=torch.float64)
    return apply_kernels(img, [disk_kernel(float(r)) for r in rad])


def sinc_blur(img: torch.Tensor, *, omega_c, kernel_size) -> torch.Tensor:
    """Ringing low-pass (2-D sinc) blur with cut-off ``omega_c`` per sample (Real-ESRGAN's sinc kernels)."""
    check_image(img)
    b = img.shape[0]
    om = per_sample(omega_c, b, name="omega_c", dtype=torch.float64)
    ks = per_sample(kernel_size, b, name="kernel_size", dtype=torch.float64)
    out = apply_kernels(img, [sinc_kernel(int(ks[i]), float(om[i])) for i in range(b)])
    return out.clamp(0.0, 1.0)  # the sinc's negative lobes can overshoot
