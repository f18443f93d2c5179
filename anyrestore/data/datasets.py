"""Training/validation datasets: paired folders and synthetic-on-the-fly streams, crops and flips, collation.

Every stream implements ``len(stream)`` and ``stream.sample(index, generator) -> dict`` (see
:class:`anyrestore.data.sampling.Stream`): all randomness (crop position, flips, degradation) comes from the
generator it is given, so a sample is reproducible from its seed alone. A sample dict holds ``lq``, ``gt``
(float32 (3,H,W) in [0,1]), ``label`` (dict: ``type``, ``level``, ``params``, ``class_index``...) and ``name``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F

from anyrestore.errors import AnyRestoreError, ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DatasetLayoutError(AnyRestoreError):
    """A dataset folder is missing, empty, or its LQ/GT files do not pair up."""


# ----------------------------------------------------------------------------------------------- listing / pairing


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files of ``folder``, sorted lexicographically by their path relative to it (ram.md D12)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"folder not found: {folder}")
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def gt_key(lq: Path, rule: str, gt_suffix: str | None = None) -> str:
    """The GT file name (or stem, for ``stem``) that LQ file ``lq`` pairs with under ``rule``.

    * ``name``: identical file names.
    * ``stem``: identical names up to the extension (``0001.jpg`` ↔ ``0001.png``).
    * ``prefix``: the LQ stem up to its first ``_`` (SOTS/OTS ``0001_0.8_0.2.jpg`` ↔ ``0001.png``).
    * ``rain``: ``rain-N`` ↔ ``norain-N``; ``lol_real``: ``lowNNNNN`` ↔ ``normalNNNNN``.
    """
    stem = lq.stem
    if rule == "name":
        return lq.name
    if rule == "prefix":
        stem = stem.split("_", 1)[0]
    elif rule == "rain":
        stem = "no" + stem if stem.startswith("rain") else stem
    elif rule == "lol_real":
        stem = "normal" + stem[3:] if stem.startswith("low") else stem
    elif rule != "stem":
        raise ConfigError(f"unknown pairing rule {rule!r} (known: name, stem, prefix, rain, lol_real)")
    return stem + gt_suffix if gt_suffix else stem


def pair_folders(lq_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, rule: str = "stem",
                 gt_suffix: str | None = None, recursive: bool = False) -> list[tuple[Path, Path]]:
    """Pair every LQ image with its GT image.

    Several LQ files may share a GT (SOTS/OTS prefix rule). Raises :class:`DatasetLayoutError` naming the folders
    and the first unpaired files when any LQ file has no GT or the folders are empty.
    """
    lq_files = list_images(lq_dir, recursive=recursive)
    gt_files = list_images(gt_dir, recursive=recursive)
    if not lq_files:
        raise DatasetLayoutError(f"no images in {lq_dir}")
    if not gt_files:
        raise DatasetLayoutError(f"no images in {gt_dir}")
    by_key: dict[str, Path] = {}
    for gt in gt_files:
        rel_parent = gt.parent.relative_to(gt_dir).as_posix()
        key = gt.name if (rule == "name" or gt_suffix) else gt.stem
        by_key[f"{rel_parent}/{key}"] = gt
    pairs, missing = [], []
    for lq in lq_files:
        key = f"{lq.parent.relative_to(lq_dir).as_posix()}/{gt_key(lq, rule, gt_suffix)}"
        if key in by_key:
            pairs.append((lq, by_key[key]))
        else:
            missing.append(lq.name)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetLayoutError(
            f"{len(missing)} of {len(lq_files)} files in {lq_dir} have no partner in {gt_dir} (pairing {rule!r}): {shown}")
    return pairs


# ----------------------------------------------------------------------------------------------- image ops


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image as float32 (3,H,W) RGB in [0,1] (delegates to :mod:`anyrestore.io`)."""
    from anyrestore.io import read_image as _read

    img = _read(path)
    if not isinstance(img, torch.Tensor):
        img = torch.from_numpy(img)
    if img.ndim == 3 and img.shape[0] not in (1, 3) and img.shape[-1] in (1, 3):
        img = img.permute(2, 0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img.float().contiguous()


def pad_to(img: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-101 pad (3,H,W) on the right/bottom so both sides are >= ``size`` (replicate beyond one period)."""
    _, h, w = img.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph == 0 and pw == 0:
        return img
    rh, rw = min(ph, h - 1), min(pw, w - 1)
    out = F.pad(img[None], (0, rw, 0, rh), mode="reflect")[0] if (rh or rw) else img
    if ph > rh or pw > rw:
        out = F.pad(out[None], (0, pw - rw, 0, ph - rh), mode="replicate")[0]
    return out


def random_crop(images: Sequence[torch.Tensor], size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The same random ``size``×``size`` window of every image (all (C,H,W) of one size; padded if smaller)."""
    images = [pad_to(img, size) for img in images]
    _, h, w = images[0].shape
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return [img[:, top : top + size, left : left + size] for img in images]


AugmentMode = Literal["none", "hflip", "flip_rot"]


def augment(images: Sequence[torch.Tensor], mode: AugmentMode, generator: torch.Generator) -> list[torch.Tensor]:
    """Apply one random geometric transform to every image alike.

    ``hflip``: horizontal flip with p = 0.5 (RAM). ``flip_rot``: one of the 8 flip/rot90 transforms, uniformly.
    """
    code = _draw_transform(mode, generator)
    out = [_transform(img, code) for img in images]
    return [img.contiguous() for img in out] if mode == "flip_rot" else out


def _draw_transform(mode: AugmentMode, generator: torch.Generator) -> int:
    """The transform code of :func:`augment`: bit 4 transpose, then bit 2 vertical flip, then bit 1 horizontal."""
    if mode == "none":
        return 0
    if mode == "hflip":
        return int(bool(torch.rand((), generator=generator) < 0.5))
    return int(torch.randint(8, (1,), generator=generator))


def _transform(img: torch.Tensor, code: int) -> torch.Tensor:
    if code & 4:
        img = img.transpose(-1, -2)
    if code & 2:
        img = img.flip(-2)
    if code & 1:
        img = img.flip(-1)
    return img


def augment_then_crop(image: torch.Tensor, mode: AugmentMode, size: int | None,
                      generator: torch.Generator) -> torch.Tensor:
    """``random_crop(augment([image]))`` with the same random draws and the same result, but the transform is
    applied to the ``size``² window only (cut from the untransformed image), not to the whole photo: on 720p
    training photos this halves the cost of a sample. The result may be a strided view: callers make it contiguous."""
    code = _draw_transform(mode, generator)
    _, h, w = image.shape
    th, tw = (w, h) if code & 4 else (h, w)
    if size is None or th < size or tw < size:  # whole image, or padding needed: the plain order
        out = _transform(image, code)
        return out if size is None else random_crop([out], size, generator)[0]
    top = int(torch.randint(th - size + 1, (1,), generator=generator))
    left = int(torch.randint(tw - size + 1, (1,), generator=generator))
    # the window in the transposed (not yet flipped) frame, then in the original one
    rows = th - top - size if code & 2 else top
    cols = tw - left - size if code & 1 else left
    if code & 4:
        rows, cols = cols, rows
    return _transform(image[:, rows:rows + size, cols:cols + size], code)


# ----------------------------------------------------------------------------------------------- streams


def _label(label: dict[str, Any] | None, default_type: str, class_index: int = -1) -> dict[str, Any]:
    out = {"type": default_type, "level": None, "params": {}, "class_index": class_index}
    if label:
        out.update(label)
    return out


class PairedStream:
    """LQ/GT pairs from disk with a paired random crop and geometric augmentation.

    Args:
        pairs: ``(lq_path, gt_path)`` list (see :func:`pair_folders`).
        crop: crop size (``None``: whole images; GT cropped top-left to the LQ size).
        augment_mode: see :func:`augment`.
        name: stream/task name stored in the label ``type``.
        class_index: degradation class of every sample (-1 unknown).
        loader: image reader (default :func:`read_image`).
    """

    def __init__(self, *, pairs: Sequence[tuple[Path, Path]], crop: int | None, augment_mode: AugmentMode = "hflip",
                 name: str = "paired", class_index: int = -1, loader: Callable[[Path], torch.Tensor] = read_image) -> None:
        self.pairs, self.crop, self.augment_mode = list(pairs), crop, augment_mode
        self.name, self.class_index, self.loader = name, class_index, loader

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, index: int, generator: torch.Generator) -> dict[str, Any]:
        lq_path, gt_path = self.pairs[index]
        lq, gt = self.loader(lq_path), self.loader(gt_path)
        h, w = min(lq.shape[1], gt.shape[1]), min(lq.shape[2], gt.shape[2])
        lq, gt = lq[:, :h, :w], gt[:, :h, :w]
        if self.crop is not None:
            lq, gt = random_crop([lq, gt], self.crop, generator)
        lq, gt = augment([lq, gt], self.augment_mode, generator)
        return {"lq": lq.contiguous(), "gt": gt.contiguous(), "name": lq_path.stem,
                "label": _label(None, self.name, self.class_index)}


class SyntheticStream:
    """Clean images from a source, cropped/augmented, then degraded on the fly by a degradation sampler.

    Args:
        source: clean images: ``len(source)`` and ``source.image(index, generator) -> (3,H,W)``.
        sampler: degradation sampler ``sampler(clean (B,3,H,W), generator) -> (lq, labels)``, or ``None`` for the
            identity stream (LQ = GT).
        crop: crop size (``None`` keeps whole images).
        augment_mode: see :func:`augment` (applied to the clean image before degradation, as RAM does).
        name: stream name (label ``type`` of identity samples).
    """

    def __init__(self, *, source: Any, sampler: Callable | None, crop: int | None, augment_mode: AugmentMode = "hflip",
                 name: str = "synthetic", class_index: int = -1) -> None:
        self.source, self.sampler, self.crop, self.augment_mode = source, sampler, crop, augment_mode
        self.name, self.class_index = name, class_index

    def __len__(self) -> int:
        return len(self.source)

    def sample(self, index: int, generator: torch.Generator) -> dict[str, Any]:
        clean = self.source.image(index, generator)
        clean = augment_then_crop(clean, self.augment_mode, self.crop, generator).contiguous().float()
        if self.sampler is None:
            return {"lq": clean.clone(), "gt": clean, "name": f"{self.name}_{index}",
                    "label": _label({"type": "identity", "level": 0}, "identity", self.class_index)}
        lq, labels = self.sampler(clean[None], generator)
        label = labels[0] if isinstance(labels, (list, tuple)) else labels
        return {"lq": lq[0].clamp(0, 1).contiguous().float(), "gt": clean, "name": f"{self.name}_{index}",
                "label": _label(dict(label), self.name, self.class_index)}


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch: ``lq``/``gt`` (B,3,H,W), ``class_index`` (B,), ``labels``, ``names``, ``stream``."""
    return {
        "lq": torch.stack([s["lq"] for s in samples]),
        "gt": torch.stack([s["gt"] for s in samples]),
        "class_index": torch.tensor([int(s["label"].get("class_index", -1)) for s in samples], dtype=torch.long),
        "labels": [s["label"] for s in samples],
        "names": [s.get("name", "") for s in samples],
        "stream": torch.tensor([int(s.get("stream", 0)) for s in samples], dtype=torch.long),
    }
