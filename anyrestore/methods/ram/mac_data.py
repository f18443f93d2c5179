"""Images for the MAC / IG layer analysis (ram.md §5.2): centre crops of degraded images, one task label each.

Data specs accepted by :func:`mac_images` (and ``anyrestore mac --data``):

* ``PATH`` (an existing folder): its LQ images, found recursively, sorted (D12); one task named after the folder.
* ``ram7:ROOT``: the paper's seven training tasks under the dataset root ``ROOT`` (layout of ram.md §10.1): OTS
  hazy, Rain13k train input, LOL-v2 train low (real captured, then synthetic), LSDIR + noise, GoPro train blur,
  LSDIR + blur, LSDIR + JPEG. The three LSDIR tasks use the same first clean images, cropped first, then degraded
  with the preset's training ranges.
* ``SOURCE+PRESET`` (e.g. ``deadleaves+ram-official-code``, ``shipped+ram-paper``, ``/photos+ram-paper``): seven
  synthetic analogues of those tasks on clean images from SOURCE (``shipped`` = the public-domain photographs of
  the installed packages, see :mod:`anyrestore.data.sources`; ``deadleaves`` = procedural dead-leaves images drawn
  at the crop size; or a folder of clean images; files are centre-cropped and cycled when there are fewer than
  ``count``): haze, rain, low light, noise, motion blur, Gaussian blur, JPEG. Noise, blur and JPEG use the RAM preset's training ranges, the others the catalog's
  default training ranges.

Every image is centre-cropped to ``crop`` (``top = (h − crop)//2``); images smaller than the crop are skipped and
reported. Degradations are drawn from a generator seeded with the analysis seed, so a spec and seed always give the
same images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from anyrestore.errors import ConfigError

RAM_PRESETS = {"ram-official-code": "official-code", "ram-paper": "paper"}
SYNTHETIC_TASKS = ("haze", "rain", "low_light", "noise", "motion_blur", "blur", "jpeg")


@dataclass
class MacImage:
    """One analysis input: a (3,crop,crop) image in [0,1], its task, file and drawn degradation parameters."""

    task: str
    image: torch.Tensor
    path: str | None = None
    degradation: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        return {"task": self.task, "path": self.path, "degradation": self.degradation}


@dataclass
class MacData:
    images: list[MacImage]
    skipped: list[str] = field(default_factory=list)  # files smaller than the crop
    preset: str | None = None


def centre_crop(img: torch.Tensor, size: int) -> torch.Tensor | None:
    """The central size×size crop of a (C,H,W) image, or None when a side is shorter than ``size``."""
    _, h, w = img.shape
    if h < size or w < size:
        return None
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top:top + size, left:left + size].contiguous()


def _ram_sampler(task: str, preset: str) -> Callable:
    from anyrestore.degradations import build_sampler
    from anyrestore.degradations.catalog import RAM_TRAIN

    if task in ("noise", "blur", "jpeg"):
        return build_sampler({"type": task, **RAM_TRAIN[preset][task]})
    return build_sampler(task)


def _degrade(crop: torch.Tensor, task: str, preset: str, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    lq, labels = _ram_sampler(task, preset)(crop[None], generator)
    return lq[0].clamp(0, 1), {"type": task, **labels[0]["params"]}


def _first_crops(files: list[Path], count: int, crop: int, skipped: list[str]) -> list[tuple[Path, torch.Tensor]]:
    from anyrestore.data.datasets import read_image

    out = []
    for path in files:
        if len(out) == count:
            break
        patch = centre_crop(read_image(path), crop)
        if patch is None:
            skipped.append(str(path))
            continue
        out.append((path, patch))
    return out


def _listing(folder: Path, *, keep: Callable[[Path], bool] = lambda p: True) -> list[Path]:
    from anyrestore.data.datasets import list_images

    if not folder.is_dir():
        raise ConfigError(f"MAC data folder not found: {folder}")
    return [p for p in list_images(folder, recursive=True) if keep(p)]


def folder_images(folder: str | Path, *, count: int, crop: int) -> MacData:
    folder = Path(folder)
    data = MacData([])
    for path, patch in _first_crops(_listing(folder), count, crop, data.skipped):
        data.images.append(MacImage(folder.name or "folder", patch, str(path)))
    if not data.images:
        raise ConfigError(f"no image of at least {crop}x{crop} in {folder}")
    return data


def ram7_images(root: str | Path, *, count: int = 10, crop: int = 64, preset: str = "official-code",
                seed: int = 0) -> MacData:
    """The seven-task MAC set of ram.md §5.2 from real datasets under ``root``."""
    root = Path(root)
    generator = torch.Generator().manual_seed(seed)
    data = MacData([], preset=preset)
    lol = root / "LOL-v2"
    paired = [
        ("dehaze", _listing(root / "OTS_ALPHA/haze/OTS")),
        ("derain", _listing(root / "rain13k/train/input")),
        ("lowlight", _listing(lol / "Real_captured/Train/Low") + _listing(lol / "Synthetic/Train/Low")),
    ]
    lsdir = _first_crops(_listing(root / "LSDIR"), count, crop, data.skipped)
    gopro = ("motion_deblur", _listing(root / "gopro/train", keep=lambda p: p.parent.name == "blur"))
    for task, files in paired:
        data.images += [MacImage(task, patch, str(path)) for path, patch in
                        _first_crops(files, count, crop, data.skipped)]
    for task, op in (("denoise", "noise"), (gopro[0], None), ("deblur", "blur"), ("dejpeg", "jpeg")):
        if op is None:
            data.images += [MacImage(task, patch, str(path)) for path, patch in
                            _first_crops(gopro[1], count, crop, data.skipped)]
            continue
        for path, patch in lsdir:
            lq, params = _degrade(patch, op, preset, generator)
            data.images.append(MacImage(task, lq, str(path), params))
    counts = {t: sum(im.task == t for im in data.images) for t in dict.fromkeys(im.task for im in data.images)}
    empty = [t for t in ("dehaze", "derain", "lowlight", "denoise", "motion_deblur") if counts.get(t, 0) == 0]
    if empty:
        raise ConfigError(f"no usable image for MAC task(s) {', '.join(empty)} under {root}")
    return data


def _clean_source(name: str, count: int, crop: int, generator: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """``count`` clean (name, crop) pairs from a named source (shipped photos, dead leaves) or a folder."""
    from anyrestore.data import sources

    if name in ("deadleaves", "dead_leaves"):
        leaves = sources.DeadLeaves(size=crop)
        return [(f"dead_leaves:{i}", leaves.sample(generator)) for i in range(count)]
    if name == "shipped":
        files = sources.shipped_photo_paths()
    elif Path(name).is_dir():
        files = _listing(Path(name))
    else:
        raise ConfigError(f"unknown image source {name!r}; use shipped, deadleaves or a folder")
    crops = [(str(f), c) for f, c in _first_crops(files, count, crop, [])]
    if not crops:
        raise ConfigError(f"image source {name!r} gave no image of at least {crop}x{crop}")
    return [crops[i % len(crops)] for i in range(count)]  # fewer files than count: cycle (new degradations)


def synthetic_images(source: str, *, preset: str = "official-code", count: int = 10, crop: int = 64,
                     seed: int = 0) -> MacData:
    """Seven synthetic tasks (``SYNTHETIC_TASKS``) on ``count`` clean crops from ``source``."""
    generator = torch.Generator().manual_seed(seed)
    clean = _clean_source(source, count, crop, generator)
    data = MacData([], preset=preset)
    for task in SYNTHETIC_TASKS:
        for name, patch in clean:
            lq, params = _degrade(patch, task, preset, generator)
            data.images.append(MacImage(task, lq, name, params))
    return data


def mac_images(spec: str, *, count: int = 10, crop: int = 64, seed: int = 0, preset: str = "official-code") -> MacData:
    """Resolve a data spec (module docstring) into analysis images.

    ``preset`` (``official-code`` or ``paper``) gives the degradation ranges of ``ram7:`` data; ``SOURCE+PRESET``
    specs name their own.
    """
    if count < 1 or crop < 8:
        raise ConfigError(f"need at least 1 image per task and a crop of at least 8 (got {count}, {crop})")
    if preset not in RAM_PRESETS.values():
        raise ConfigError(f"unknown RAM degradation preset {preset!r}; use official-code or paper")
    if Path(spec).is_dir():
        return folder_images(spec, count=count, crop=crop)
    if spec.startswith("ram7:"):
        return ram7_images(spec[5:], count=count, crop=crop, preset=preset, seed=seed)
    source, sep, preset_name = spec.rpartition("+")
    if sep and preset_name in RAM_PRESETS:
        return synthetic_images(source, preset=RAM_PRESETS[preset_name], count=count, crop=crop, seed=seed)
    raise ConfigError(
        f"MAC data {spec!r} is neither a folder, 'ram7:ROOT' nor 'SOURCE+PRESET' "
        f"(presets: {', '.join(RAM_PRESETS)}; sources: shipped, deadleaves or a folder)"
    )
