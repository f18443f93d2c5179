"""Clean-image sources: image folders, the photographs shipped inside installed packages, and dead leaves.

Every source yields float32 (3,H,W) RGB tensors in [0,1]. Finite sources support ``len()``, ``source[i]`` and
``source.paths``; all sources offer ``image(index, generator)`` (the training streams' interface) and
``sample(generator)``.

Shipped photographs [decision]: only real photographs that are not already degraded are used, picked by name from
an allow-list, so a new package release cannot slip other files in:

* scikit-image ``data/``: astronaut, brick, camera, coffee, coins, grass, gravel, hubble_deep_field, moon,
  motorcycle_left, motorcycle_right, rocket. Left out: chelsea (the project's held-out sample, excluded from all
  training by default), clock_motion (already motion-blurred), horse (binary silhouette), cell / ihc /
  microaneurysms / retina (microscopy, medical), and the synthetic images (chessboard_*, color, logo, page,
  phantom, text). Grey photos are replicated to 3 channels.
* scikit-learn ``datasets/images/``: china.jpg, flower.jpg.
* matplotlib ``mpl-data/sample_data/``: grace_hopper.jpg.

Packages that are not installed are skipped; nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from anyrestore.errors import ConfigError, ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
HELD_OUT = ("chelsea.png",)

SHIPPED = {
    "skimage": ("data", ("astronaut.png", "brick.png", "camera.png", "coffee.png", "coins.png", "grass.png",
                         "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png",
                         "motorcycle_right.png", "rocket.jpg", "chelsea.png")),
    "sklearn": ("datasets/images", ("china.jpg", "flower.jpg")),
    "matplotlib": ("mpl-data/sample_data", ("grace_hopper.jpg",)),
}


def _read(path: Path) -> torch.Tensor:
    from anyrestore.io import read_image

    img = read_image(path)
    return img[:3] if img.shape[0] >= 3 else img.expand(3, -1, -1).clone()


def list_images(root: str | os.PathLike, *, extensions: Iterable[str] = IMAGE_SUFFIXES, recursive: bool = True,
                exclude: Iterable[str] = ()) -> list[Path]:
    """Image files under ``root`` (recursive by default), filtered by suffix (case-insensitive), sorted by path.

    ``exclude`` removes files whose name or root-relative path equals an entry.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"image folder not found: {root}")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skip = set(exclude)
    it = root.rglob("*") if recursive else root.iterdir()
    files = [p for p in it if p.is_file() and p.suffix.lower() in exts
             and p.name not in skip and p.relative_to(root).as_posix() not in skip]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def shipped_photo_paths(*, exclude: Iterable[str] = HELD_OUT, packages: Sequence[str] = tuple(SHIPPED)) -> list[Path]:
    """Paths of the allow-listed photographs of the installed packages (see the module docstring), in a fixed order.

    ``exclude`` holds file names to leave out; by default the project's held-out ``chelsea.png``.
    """
    skip = set(exclude)
    out = []
    for pkg in packages:
        if pkg not in SHIPPED:
            raise ConfigError(f"unknown photo package {pkg!r}; known: {', '.join(SHIPPED)}")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        sub, names = SHIPPED[pkg]
        base = Path(list(spec.submodule_search_locations)[0]) / sub
        out += [base / n for n in names if n not in skip and (base / n).is_file()]
    return out


class _FileSource:
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _read(self.paths[index])

    def image(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self[index % len(self.paths)]

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return self[int(torch.randint(0, len(self.paths), (1,), generator=generator))]


class FolderSource(_FileSource):
    """All images under a folder (recursive, sorted, by extension), read as (3,H,W) float in [0,1]."""

    def __init__(self, *, root: str | os.PathLike, extensions: Sequence[str] = IMAGE_SUFFIXES, recursive: bool = True,
                 exclude: Sequence[str] = ()):
        self.root = Path(root)
        self.paths = list_images(root, extensions=extensions, recursive=recursive, exclude=exclude)
        if not self.paths:
            raise ConfigError(f"no images with suffix {', '.join(extensions)} under {root}")


class ShippedPhotos(_FileSource):
    """The natural photographs shipped with scikit-image, scikit-learn and matplotlib (whichever are installed)."""

    def __init__(self, *, exclude: Sequence[str] = HELD_OUT, packages: Sequence[str] = tuple(SHIPPED)):
        self.paths = shipped_photo_paths(exclude=exclude, packages=packages)
        if not self.paths:
            raise ConfigError("no shipped photographs found: install scikit-image, scikit-learn or matplotlib")


# ------------------------------------------------------------------------------------------------ dead leaves
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of shape (N,); returns (N,3) float32."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, axis=1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(h))].astype(np.float32)


_SMALL = 3  # leaves reaching at most this many pixels from their centre are rasterised together, vectorised


def _leaf_masks(kind, pu, pv, r, aspect):
    if np.ndim(kind) == 0:  # one leaf: build only its own shape
        if kind < 0.6:
            return pu**2 + pv**2 <= r * r
        if kind < 0.85:
            return (pu / r) ** 2 + (pv / (r * aspect)) ** 2 <= 1
        return (np.abs(pu) <= r) & (np.abs(pv) <= r * aspect)
    disc = pu**2 + pv**2 <= r * r
    ellipse = (pu / r) ** 2 + (pv / (r * aspect)) ** 2 <= 1
    rect = (np.abs(pu) <= r) & (np.abs(pv) <= r * aspect)
    return np.where(kind < 0.6, disc, np.where(kind < 0.85, ellipse, rect))


def _leaf_values(colour, xx, yy, pu, r, row, texture):
    phi = row[..., 9] * 2 * np.pi
    shade = 1.0 + 0.35 * (row[..., 10] - 0.5) * 2 * (np.cos(phi) * xx + np.sin(phi) * yy) / r
    period = 2.0 + 0.3 * r * row[..., 11] / max(texture, 1e-6)
    stripes = np.where(row[..., 11] < texture, 1.0 + 0.08 * np.sin(2 * np.pi * pu / period), 1.0)
    return np.clip(colour * (shade * stripes)[..., None], 0.0, 1.0)


def dead_leaves(height: int, width: int, generator: torch.Generator | None = None, *, r_min: float | None = None,
                r_max: float | None = None, coverage: float = 6.0, texture: float = 0.5,
                blur: tuple[float, float] = (0.3, 1.0)) -> torch.Tensor:
    """One dead-leaves image (3,H,W) in [0,1]: occluding random shapes with power-law radii.

    Radii follow p(r) ∝ r⁻³ on [r_min, r_max] (scale invariance, giving a roughly 1/f² power spectrum like natural
    images). Shapes are discs, ellipses and rotated rectangles painted back to front until the painted area is
    ``coverage`` × the image. Colours: uniform hue, low-skewed saturation, broad value; each leaf carries a linear
    shading gradient and, with probability ``texture``, a faint stripe texture. A mild Gaussian blur
    (sigma uniform in ``blur``) stands in for optics. All randomness comes from ``generator``.
    """
    from anyrestore.degradations._util import smooth

    if height < 1 or width < 1:
        raise ValueError(f"dead_leaves size must be positive, got {height}x{width}")
    short = min(height, width)
    r_min = float(r_min) if r_min is not None else max(1.0, short / 160)
    r_max = float(r_max) if r_max is not None else max(r_min * 2, short / 2)
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got {r_min}, {r_max}")
    mean_area = math.pi * 2 * r_min**2 * math.log(r_max / r_min) / (1 - (r_min / r_max) ** 2)
    n = int(math.ceil(coverage * height * width / mean_area)) + 1
    u = torch.rand((n, 12), generator=generator, dtype=torch.float64).numpy()
    a, b = r_min**-2, r_max**-2
    radius = (a - u[:, 0] * (a - b)) ** -0.5
    radius[0] = 2.0 * max(height, width)  # the first leaf is the background
    cy, cx = u[:, 1] * height, u[:, 2] * width
    kind, theta, aspect = u[:, 3], u[:, 4] * math.pi, 0.4 + 0.6 * u[:, 5]
    colour = _hsv_to_rgb(u[:, 6], 0.85 * u[:, 7] ** 2, 0.08 + 0.9 * u[:, 8] ** 0.8)
    reach = np.where(kind < 0.6, radius, radius * 1.5)
    # z-buffer of leaf ids: a later leaf covers an earlier one, so each pixel shows the largest covering id
    top = np.zeros(height * width, dtype=np.int64)  # leaf 0 is the background
    small = np.flatnonzero((reach <= _SMALL) & (np.arange(n) > 0))
    if small.size:  # rasterise all small leaves at once in their (2S+1)² boxes
        off = np.arange(-_SMALL, _SMALL + 1)
        py = np.floor(cy[small])[:, None, None] + off[None, :, None]  # (M, S, 1)
        px = np.floor(cx[small])[:, None, None] + off[None, None, :]  # (M, 1, S)
        yy, xx = py + 0.5 - cy[small, None, None], px + 0.5 - cx[small, None, None]
        c, s_ = np.cos(theta[small])[:, None, None], np.sin(theta[small])[:, None, None]
        mask = _leaf_masks(kind[small, None, None], c * xx + s_ * yy, -s_ * xx + c * yy,
                           radius[small, None, None], aspect[small, None, None])
        mask &= (py >= 0) & (py < height) & (px >= 0) & (px < width)
        sel = np.nonzero(mask)
        flat = np.broadcast_to(py, mask.shape)[sel].astype(np.int64) * width + np.broadcast_to(px, mask.shape)[sel].astype(np.int64)
        np.maximum.at(top, flat, small[sel[0]])
    top = top.reshape(height, width)
    for k in np.flatnonzero((reach > _SMALL) & (np.arange(n) > 0)):
        y0, y1 = max(0, int(cy[k] - reach[k])), min(height, int(cy[k] + reach[k]) + 1)
        x0, x1 = max(0, int(cx[k] - reach[k])), min(width, int(cx[k] + reach[k]) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - cy[k]
        xx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - cx[k]
        c, s_ = math.cos(theta[k]), math.sin(theta[k])
        mask = _leaf_masks(kind[k], c * xx + s_ * yy, -s_ * xx + c * yy, radius[k], aspect[k])
        win = top[y0:y1, x0:x1]
        np.maximum(win, np.where(mask, k, -1), out=win)
    # every pixel's value from its visible leaf: colour x shading gradient x optional stripes
    yy = np.arange(height, dtype=np.float64)[:, None] + 0.5 - cy[top]
    xx = np.arange(width, dtype=np.float64)[None, :] + 0.5 - cx[top]
    pu = np.cos(theta[top]) * xx + np.sin(theta[top]) * yy
    canvas = _leaf_values(colour[top], xx, yy, pu, radius[top], u[top], texture).astype(np.float32)
    img = torch.from_numpy(canvas).permute(2, 0, 1).contiguous()
    sigma = blur[0] + (blur[1] - blur[0]) * float(torch.rand((), generator=generator))
    img = smooth(img[:, None], sigma)[:, 0] if sigma > 0 else img
    return img.clamp(0.0, 1.0)


class DeadLeaves:
    """Infinite dead-leaves source: every call draws a new image from the caller's generator.

    Args:
        size: output size, an int (square) or (height, width).
        r_min, r_max, coverage, texture, blur: see :func:`dead_leaves`.
    """

    def __init__(self, *, size: int | Sequence[int] = 256, r_min: float | None = None, r_max: float | None = None,
                 coverage: float = 6.0, texture: float = 0.5, blur: Sequence[float] = (0.3, 1.0)):
        hw = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
        if len(hw) != 2 or min(hw) < 1:
            raise ConfigError(f"dead_leaves size must be an int or (height, width), got {size!r}")
        self.size = hw
        self.kwargs = {"r_min": r_min, "r_max": r_max, "coverage": float(coverage), "texture": float(texture),
                       "blur": (float(blur[0]), float(blur[1]))}

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return dead_leaves(*self.size, generator, **self.kwargs)

    __call__ = sample

    def image(self, index: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample(generator)

    def generate(self, seed: int) -> torch.Tensor:
        """The image of a given seed (independent of any other draw)."""
        return self.sample(torch.Generator().manual_seed(int(seed)))


def build_source(spec: dict, root: str | os.PathLike | None = None):
    """A source from a recipe spec.

    ``{"type": "folder", "path": DIR, "extensions": [...], "recursive": true, "exclude": [...]}`` (a relative
    ``path`` is resolved against ``root``, the data root; a ``root`` key in the spec is used the same way);
    ``{"type": "shipped", "exclude": [...]}``; ``{"type": "dead_leaves", "size": 256, ...}``.
    """
    spec = dict(spec)
    kind = spec.pop("type", None)
    data_root = spec.pop("root", root)
    try:
        if kind == "folder":
            path = Path(os.path.expanduser(str(spec.pop("path"))))
            if not path.is_absolute() and data_root is not None:
                path = Path(data_root) / path
            return FolderSource(root=path, **spec)
        if kind == "shipped":
            return ShippedPhotos(**spec)
        if kind == "dead_leaves":
            return DeadLeaves(**spec)
    except TypeError as exc:
        raise ConfigError(f"source {kind!r}: {exc}") from exc
    except KeyError as exc:
        raise ConfigError(f"source {kind!r}: missing key {exc}") from exc
    raise ConfigError(f"unknown source type {kind!r}; known: folder, shipped, dead_leaves")


__all__ = ["DeadLeaves", "FolderSource", "ShippedPhotos", "build_source", "dead_leaves", "list_images",
           "shipped_photo_paths", "ImageReadError"]
