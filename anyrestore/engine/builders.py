"""Recipe sections -> runtime objects: streams, the training mixture and loader, model export.

Kept apart from the trainer so the evaluation code and the benchmarks build data exactly as training does.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.data.datasets import PairedStream, SyntheticStream, collate, pair_folders
from anyrestore.data.sampling import MixtureDataset, ShardedShuffleSampler
from anyrestore.engine.config import RunConfig, StreamConfig
from anyrestore.engine.distributed import DistInfo
from anyrestore.errors import ConfigError


class SourceAdapter:
    """Uniform view of a clean-image source: ``len()`` and ``image(index, generator) -> (3,H,W)``.

    Accepts sources that already offer ``image(index, generator)``, indexable sources (``source[i]``), and
    generator-driven sources (``source.sample(generator)`` / ``source(generator)``) with a nominal ``length``.

    With ``cache=True`` each clean image is kept in memory after its first use; a generator-driven source then
    becomes a fixed pool of ``length`` images, image ``i`` drawn from its own seed ``(cache_key, i)`` so the pool
    does not depend on access order or worker count (useful on CPU, where decoding or dead-leaves synthesis can
    cost more than the training step).
    """

    def __init__(self, source: Any, *, length: int | None = None, cache: bool = False, cache_key: str = "") -> None:
        self.source = source
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None
        self.cache_key = cache_key
        natural = None
        try:
            natural = len(source)
        except TypeError:
            pass
        self.length = length if length is not None else natural
        if self.length is None or self.length <= 0:
            raise ConfigError(f"source {type(source).__name__} has no natural length: set the stream's 'length'")
        self._natural = natural

    def __len__(self) -> int:
        return int(self.length)

    def image(self, index: int, generator: torch.Generator) -> torch.Tensor:
        if self.cache is None:
            return self._load(index, generator)
        if index not in self.cache:
            from anyrestore.data.sampling import sample_generator

            self.cache[index] = self._load(index, sample_generator("source-cache", self.cache_key, index))
        return self.cache[index]

    def fill(self) -> None:
        """Populate the whole cache now (before DataLoader workers fork, so they share it)."""
        if self.cache is not None:
            for index in range(len(self)):
                self.image(index, torch.Generator())

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor:
        src = self.source
        if hasattr(src, "image"):
            img = src.image(index if self._natural is None else index % self._natural, generator)
        elif self._natural is not None and hasattr(src, "__getitem__"):
            img = src[index % self._natural]
        elif hasattr(src, "sample"):
            img = src.sample(generator)
        else:
            img = src(generator)
        if img.ndim == 4:
            img = img[0]
        return img.float()


def build_source(spec: dict[str, Any], data_root: str, length: int | None = None, *, cache: bool = False,
                 cache_key: str = "") -> SourceAdapter:
    """A clean-image source from its recipe spec (``{type: folder|shipped|dead_leaves, ...}``, see
    :func:`anyrestore.data.sources.build_source`); relative folder paths resolve against the data root."""
    from anyrestore.data.sources import build_source as _build

    try:
        source = _build(dict(spec), data_root)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"source {spec.get('type')!r}: {exc}") from exc
    return SourceAdapter(source, length=length, cache=cache, cache_key=cache_key)


def build_sampler(spec: str | dict[str, Any] | None):
    """A degradation sampler from its spec, or ``None`` (identity stream) when the spec is absent."""
    if spec is None:
        return None
    from anyrestore.degradations import build_sampler as _build

    try:
        return _build(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"degradation: {exc}") from exc


def resolve_path(path: str, data_root: str) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path(data_root) / p


def _scene_dirs(lq: str, gt: str, data_root: str) -> list[tuple[Path, Path]]:
    """``lq``/``gt`` folder pairs; a ``*`` component (``gopro/train/*/blur``) expands to every scene folder."""
    if "*" not in lq:
        return [(resolve_path(lq, data_root), resolve_path(gt, data_root))]
    lq_parts, gt_parts = lq.split("/"), gt.split("/")
    star = lq_parts.index("*")
    if gt_parts[:star] != lq_parts[:star] or len(gt_parts) <= star or gt_parts[star] != "*":
        raise ConfigError(f"paired stream: lq {lq!r} and gt {gt!r} must share the folder part before '*'")
    base = resolve_path("/".join(lq_parts[:star]), data_root)
    if not base.is_dir():
        raise ConfigError(f"paired stream: folder not found: {base}")
    scenes = sorted(d for d in base.iterdir() if d.is_dir())
    return [(scene.joinpath(*lq_parts[star + 1:]), scene.joinpath(*gt_parts[star + 1:])) for scene in scenes]


def build_stream(stream: StreamConfig, *, data_root: str, crop: int | None, augment: str, index: int = 0):
    """One :class:`~anyrestore.data.sampling.Stream` from its recipe entry."""
    name = stream.name or f"{stream.type}{index}"
    if stream.type == "paired":
        pairs = []
        for lq_dir, gt_dir in _scene_dirs(stream.lq, stream.gt, data_root):
            pairs += pair_folders(lq_dir, gt_dir, rule=stream.pairing, gt_suffix=stream.gt_suffix)
        return PairedStream(pairs=pairs, crop=crop, augment_mode=augment, name=name)
    source = build_source(stream.source, data_root, stream.length, cache=stream.cache, cache_key=name)
    return SyntheticStream(source=source, sampler=build_sampler(stream.degradation), crop=crop,
                           augment_mode=augment, name=name)


def build_train_data(cfg: RunConfig, dist: DistInfo) -> tuple[MixtureDataset, ShardedShuffleSampler, dict[str, Any]]:
    """The training mixture, its DDP-aware sampler and the remaining DataLoader keyword arguments."""
    data = cfg.data
    streams = [build_stream(s, data_root=cfg.data_root, crop=data.crop, augment=data.augment, index=i)
               for i, s in enumerate(data.streams)]
    if data.mixing == "proportional":
        weights = [float(len(s)) for s in streams]
    else:
        weights = [s.weight for s in data.streams]
    if data.num_workers > 0:
        for stream in streams:
            if isinstance(getattr(stream, "source", None), SourceAdapter):
                stream.source.fill()
    dataset = MixtureDataset(streams=streams, weights=weights, length=data.epoch_length, seed=cfg.seed)
    sampler = ShardedShuffleSampler(length=len(dataset), num_replicas=dist.world_size, rank=dist.rank, seed=cfg.seed)
    loader_kwargs = {"batch_size": data.batch_size, "num_workers": data.num_workers, "collate_fn": collate,
                     "pin_memory": torch.cuda.is_available() and cfg.train.device != "cpu"}
    return dataset, sampler, loader_kwargs


def export_model(model: nn.Module, path: str | os.PathLike, *, weights: str, extra: dict[str, str] | None = None) -> Path:
    """Save ``model`` as a standard anyrestore weights file (conventions.md §1.3) via :mod:`anyrestore.checkpoints`.

    A module that is not a registered architecture (e.g. a method wrapper returned by ``objective.prepare``) is
    written as a ``params``-prefixed weights file without architecture metadata.
    """
    from anyrestore.checkpoints import save_model, save_training_weights

    path = Path(path)
    if getattr(model, "arch_name", None) is None:
        save_training_weights(path, params=model.state_dict(), weights=weights, **(extra or {}))
    else:
        save_model(model, path, weights=weights, **(extra or {}))
    return path
