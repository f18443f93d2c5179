"""Weather: haze (atmospheric scattering), rain streaks, raindrops and snow, batched with per-sample parameters.

Procedural layers (depth prior, rain seeds, drops, flakes) are drawn from each sample's generator, sample by sample.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from anyrestore.degradations._util import (GeneratorArg, check_image, filter2d, filter_separable, gaussian_1d,
                                           generators, per_sample, rand, randn, smooth)
from anyrestore.degradations.blur import gaussian_kernel, motion_kernel


# ----------------------------------------------------------------------------------------------------------- haze
def synthetic_depth(height: int, width: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Depth prior in [0,1] (1 = far), shape (1,H,W): 0.6·vertical ramp (top far) + 0.4·smooth random field.

    The random field is white noise Gaussian-filtered at sigma = short side / 8 plus two finer octaves (sigma/2,
    sigma/4, weights 1/2 and 1/4). It is synthesised at about 64 px on the short side and resized, since it is smooth.
    """
    scale = max(1, min(height, width) // 64)
    h, w = max(1, height // scale), max(1, width // scale)
    base_sigma = min(h, w) / 8
    field = torch.zeros(1, 1, h, w)
    for octave, weight in enumerate((1.0, 0.5, 0.25)):
        f = smooth(randn((1, 1, h, w), generator, "cpu"), base_sigma / 2**octave)
        f = (f - f.min()) / (f.max() - f.min()).clamp_min(1e-12)
        field += weight * f
    field /= 1.75
    if (h, w) != (height, width):
        field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)
    ramp = torch.linspace(1.0, 0.0, height).view(1, 1, height, 1).expand(1, 1, height, width)
    d = 0.6 * ramp + 0.4 * field
    d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-12)
    return d[0].to(device)


def haze(img: torch.Tensor, *, beta, airlight, depth: torch.Tensor | None = None,
         generator: GeneratorArg = None) -> torch.Tensor:
    """Atmospheric scattering ``I = J·t + A·(1 − t)``, ``t = exp(−beta·d)``, ``d = depth / max(depth)`` per sample.

    Args:
        img: (B,C,H,W) clean image J in [0,1].
        beta: scalar or (B,) scattering coefficient (UniRestorer in-dist 0.5–2.5).
        airlight: scalar or (B,) global atmospheric light A in [0,1].
        depth: optional depth map (H,W), (1,H,W), (B,1,H,W) or (B,H,W); larger = farther. When None a synthetic
            depth prior (:func:`synthetic_depth`) is drawn per sample from its generator.
    """
    check_image(img)
    b, _, h, w = img.shape
    bt = per_sample(beta, b, name="beta", device=img.device, dtype=img.dtype)
    a = per_sample(airlight, b, name="airlight", device=img.device, dtype=img.dtype)
    if (bt < 0).any():
        raise ValueError("beta must be >= 0")
    if depth is None:
        d = torch.stack([synthetic_depth(h, w, g, img.device) for g in generators(generator, b)])
    else:
        d = torch.as_tensor(depth, dtype=img.dtype, device=img.device)
        d = d.reshape(-1, 1, *d.shape[-2:])
        if d.shape[-2:] != (h, w) or d.shape[0] not in (1, b):
            raise ValueError(f"depth must be (H,W)=({h},{w}) or (B,1,H,W), got {tuple(depth.shape)}")
        if (d < 0).any():
            raise ValueError("depth must be non-negative")
        d = d.expand(b, 1, h, w)
        d = d / d.flatten(1).amax(1).clamp_min(1e-12).view(b, 1, 1, 1)
    t = torch.exp(-bt.view(b, 1, 1, 1) * d)
    return img * t + a.view(b, 1, 1, 1) * (1 - t)


# ----------------------------------------------------------------------------------------------------------- rain
_SEED_FILTER = torch.tensor([[0.0, 0.1, 0.0], [0.1, 8.0, 0.1], [0.0, 0.1, 0.0]])


def _opencv_sigma(ksize: int) -> float:
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def streak_kernel(length: int, angle: float, width: int) -> torch.Tensor:
    """Rain streak PSF: the diagonal of a ``length``² box rotated by (angle − 45°) and shrunk by (1 − length/100),
    then widened by a Gaussian of OpenCV size ``width``. ``angle`` 0 gives vertical streaks."""
    seg = length * math.sqrt(2) * (1 - length / 100)
    size = 2 * math.ceil(seg / 2) + 1 + (width - 1)
    line = motion_kernel(size, min(seg, size), angle + 90.0)
    g = gaussian_kernel(width, _opencv_sigma(width))
    k = F.conv2d(line.view(1, 1, size, size), g.view(1, 1, width, width), padding=width // 2)[0, 0]
    return k / k.sum()


def rain_layer(height: int, width: int, *, count: float, angle: float, length: int, streak_width: int,
               generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """One (1,H,W) rain layer in [0,1] (MiOIR-style): sparse seeds (kept where U[0,256) ≥ 256 − 0.01·count),
    a 3×3 spot filter, the streak PSF, then min-max normalisation."""
    seeds = rand((1, 1, height, width), generator, "cpu") * 256.0
    seeds = torch.where(seeds >= 256.0 - 0.01 * count, seeds, torch.zeros_like(seeds))
    x = filter2d(seeds, _SEED_FILTER[None])
    x = filter2d(x, streak_kernel(int(length), float(angle), int(streak_width))[None])
    lo, hi = x.min(), x.max()
    if hi - lo <= 0:
        return torch.zeros(1, height, width, device=device)
    return ((x - lo) / (hi - lo))[0].to(device)


def rain(img: torch.Tensor, *, count, angle, length, width, generator: GeneratorArg = None) -> torch.Tensor:
    """Add rain streaks: ``clip(I + R)`` with R a grey streak layer per sample.

    Args:
        count: streak amount v (UniRestorer in-dist [50, 100), out-dist [100, 150)).
        angle: degrees in [−45, 45), 0 = vertical.
        length: streak length in pixels (20–40).
        width: odd Gaussian widening size (3, 5, 7, 9, 11).
    """
    check_image(img)
    b, c, h, w = img.shape
    v = per_sample(count, b, name="count", dtype=torch.float64)
    an = per_sample(angle, b, name="angle", dtype=torch.float64)
    ln = per_sample(length, b, name="length", dtype=torch.float64)
    wd = per_sample(width, b, name="width", dtype=torch.float64)
    if (ln < 1).any() or (ln >= 100).any() or ((wd < 1) | (wd % 2 == 0)).any():
        raise ValueError("rain length must be in [1, 100) and width a positive odd integer")
    gens = generators(generator, b)
    layers = torch.stack([rain_layer(h, w, count=float(v[i]), angle=float(an[i]), length=int(ln[i]),
                                     streak_width=int(wd[i]), generator=gens[i], device=img.device)
                          for i in range(b)]).to(img.dtype)
    return (img + layers).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------------------ raindrops
def raindrop(img: torch.Tensor, *, count, radius, generator: GeneratorArg = None) -> torch.Tensor:
    """Adherent raindrops (procedural approximation): elliptic drops that show a blurred, inverted, shrunk view
    of the scene around them (a lens), with soft edges and a faint highlight.

    Args:
        count: number of drops per image.
        radius: mean drop radius in pixels (each drop's radius is radius·U[0.5, 1.5]).
    """
    check_image(img)
    b, c, h, w = img.shape
    n = per_sample(count, b, name="count", dtype=torch.float64)
    rad = per_sample(radius, b, name="radius", dtype=torch.float64)
    if (n < 0).any() or (rad <= 0).any():
        raise ValueError("raindrop count must be >= 0 and radius > 0")
    gens = generators(generator, b)
    out = []
    for i in range(b):
        r0 = float(rad[i])
        blurred = filter2d(img[i:i + 1], gaussian_kernel(2 * math.ceil(r0 / 2) + 1, max(r0 / 4, 0.5))[None].to(img.device))
        alpha = torch.zeros(h, w)
        src_x = torch.arange(w, dtype=torch.float32).view(1, w).repeat(h, 1)
        src_y = torch.arange(h, dtype=torch.float32).view(h, 1).repeat(1, w)
        for cy, cx, rs, asp in rand((int(n[i]), 4), gens[i], "cpu").tolist():
            cy, cx = cy * h, cx * w
            rx = r0 * (0.5 + rs)
            ry = rx * (0.8 + 0.4 * asp)
            y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 2)
            x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 2)
            if y0 >= y1 or x0 >= x1:
                continue
            yy = torch.arange(y0, y1, dtype=torch.float32).view(-1, 1)
            xx = torch.arange(x0, x1, dtype=torch.float32).view(1, -1)
            dist = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
            a = ((1.0 - dist) / 0.25).clamp(0.0, 1.0)  # soft rim over the outer quarter of the radius
            win = alpha[y0:y1, x0:x1]
            inside = a > win
            win[inside] = a[inside]
            # a drop acts as a small lens: it shows the scene around it inverted and shrunk (slightly above)
            src_x[y0:y1, x0:x1][inside] = (cx - 0.5 * (xx - cx)).expand_as(a)[inside]
            src_y[y0:y1, x0:x1][inside] = (cy - 0.5 * (yy - cy) - 0.5 * ry).expand_as(a)[inside]
        grid = torch.stack([src_x / max(w - 1, 1) * 2 - 1, src_y / max(h - 1, 1) * 2 - 1], dim=-1)[None]
        seen = F.grid_sample(blurred, grid.to(img.device, img.dtype), mode="bilinear", padding_mode="border",
                             align_corners=True)
        drop = (0.9 * seen + 0.1).clamp(0.0, 1.0)
        a = alpha.to(img.device, img.dtype)[None, None]
        out.append((img[i:i + 1] * (1 - a) + drop * a)[0])
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------------------- snow
def _flake_gaussian(radius: float) -> torch.Tensor:
    """A soft flake's separable factor: the 1-D Gaussian of sigma radius/2 over 2·ceil(2·radius) + 1 taps (unit sum;
    the profiles divide by its peak, so that a flake's peak opacity is its drawn opacity)."""
    return gaussian_1d(2 * math.ceil(2 * radius) + 1, radius / 2)


def flake_profile(radius: float, hardness: float = 0.0) -> torch.Tensor:
    """One flake's opacity profile (K,K) with peak 1: a Gaussian of sigma radius/2 (``hardness`` 0, a soft flake)
    blended towards a disc of that radius with a one-pixel anti-aliased rim (``hardness`` 1, an opaque flake, which
    covers about three times the Gaussian's area at half its peak)."""
    g = _flake_gaussian(radius)
    soft = torch.outer(g, g) / g.max() ** 2
    if hardness <= 0:
        return soft
    size = g.numel()
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    dist = torch.sqrt(x[:, None] ** 2 + x[None, :] ** 2)
    disc = (radius + 0.5 - dist).clamp(0.0, 1.0)
    return torch.lerp(soft, disc, float(hardness))


def snow_mask(height: int, width: int, *, density: float, radius: float, layers: int, hardness: float = 0.0,
              generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Procedural snow opacity M in [0,1], shape (1,H,W): ``M = 1 − Π(1 − M_l)`` over ``layers`` layers.

    Layer l (0 = nearest) holds Poisson(density·H·W/10⁴) flakes of radius radius·(1 − 0.3·l) and opacity
    U[0.6, 1], soft or opaque by ``hardness`` (:func:`flake_profile`); with probability 1/2 a layer is smeared by a
    short motion streak.
    """
    keep = torch.ones(1, 1, height, width)
    for layer in range(int(layers)):
        r = max(0.5, radius * (1 - 0.3 * layer))
        lam = torch.tensor([density * height * width / 1e4], dtype=torch.float64)
        n = int(torch.poisson(lam, generator=generator).item())
        u = rand((max(n, 1), 3), generator, "cpu")[:n]
        impulses = torch.zeros(height * width)
        idx = (u[:, 0] * height).long().clamp(max=height - 1) * width + (u[:, 1] * width).long().clamp(max=width - 1)
        impulses.index_put_((idx,), 0.6 + 0.4 * u[:, 2], accumulate=True)
        if hardness <= 0:  # soft flakes filter separably
            g = _flake_gaussian(r)
            m = filter_separable(impulses.view(1, 1, height, width), (g / g.max())[None], border="constant")
        else:
            m = filter2d(impulses.view(1, 1, height, width), flake_profile(r, hardness)[None], border="constant")
        streak = rand((2,), generator, "cpu")
        if float(streak[0]) < 0.5:
            length = 2 * r
            k = motion_kernel(2 * math.ceil(length / 2) + 1, length, float(streak[1]) * 180.0)
            peak = m.max()
            m = filter2d(m, k[None], border="constant")
            m = m * (peak / m.max().clamp_min(1e-12))
        keep = keep * (1 - m.clamp(0.0, 1.0))
    return (1 - keep)[0].to(device)


def snow(img: torch.Tensor, *, density, radius, layers, hardness=0.0, generator: GeneratorArg = None) -> torch.Tensor:
    """Composite white snow: ``I·(1 − M) + M`` with a procedural mask per sample (:func:`snow_mask`).

    Args:
        density: flakes per 10⁴ pixels per layer.
        radius: flake radius of the nearest layer in pixels.
        layers: number of layers (1–3).
        hardness: 0 soft Gaussian flakes … 1 opaque discs (:func:`flake_profile`).
    """
    check_image(img)
    b, c, h, w = img.shape
    dn = per_sample(density, b, name="density", dtype=torch.float64)
    rd = per_sample(radius, b, name="radius", dtype=torch.float64)
    ly = per_sample(layers, b, name="layers", dtype=torch.float64)
    hd = per_sample(hardness, b, name="hardness", dtype=torch.float64)
    if (dn < 0).any() or (rd <= 0).any() or (ly < 1).any() or (hd < 0).any() or (hd > 1).any():
        raise ValueError("snow density must be >= 0, radius > 0, layers >= 1 and hardness in [0, 1]")
    gens = generators(generator, b)
    m = torch.stack([snow_mask(h, w, density=float(dn[i]), radius=float(rd[i]), layers=int(ly[i]),
                               hardness=float(hd[i]), generator=gens[i], device=img.device)
                     for i in range(b)]).to(img.dtype)
    return img * (1 - m) + m
