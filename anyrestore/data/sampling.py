"""Multi-task mixing, DDP-aware sampling and reproducible seeding.

Reproducibility rule **[decision]**: every training sample is a pure function of ``(seed, epoch, index)`` — its
stream, the item drawn inside the stream, the crop, the flips and the synthetic degradation all come from a
``torch.Generator`` seeded with :func:`stable_hash`. Results therefore do not depend on the number of workers or
processes, and resuming only needs ``(epoch, position)``. Worker processes are additionally seeded with
``stable_hash(seed, epoch, rank, worker_id)`` (ram.md §2) for any library that draws from a global RNG.

Mixing (ram.md D6): positions of an epoch are assigned to streams in proportion to the stream weights (equal
weights: exactly balanced, stream ``t = i mod K``); inside a stream the item is drawn uniformly over the whole
stream, independently of the position.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def stable_hash(*parts: Any) -> int:
    """A 63-bit integer hash of ``parts`` that is identical across processes and Python runs."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sample_generator(*parts: Any) -> torch.Generator:
    """A CPU generator seeded with :func:`stable_hash` of ``parts``."""
    return torch.Generator().manual_seed(stable_hash(*parts))


class Stream(Protocol):
    """A task stream: ``len(stream)`` items; ``stream.sample(index, generator)`` -> sample dict."""

    name: str

    def __len__(self) -> int: ...

    def sample(self, index: int, generator: torch.Generator) -> dict[str, Any]: ...


def stream_schedule(weights: Sequence[float], length: int) -> list[int]:
    """Stream id of each position of an epoch of ``length`` positions.

    Counts are proportional to ``weights`` (largest remainder) and interleaved so that every prefix is as balanced
    as possible; with equal weights position ``i`` belongs to stream ``i mod K``.
    """
    if length <= 0 or not weights:
        raise ValueError("stream_schedule needs a positive length and at least one stream")
    total = float(sum(weights))
    out = []
    credit = [0.0] * len(weights)
    for _ in range(length):  # smooth weighted round robin, in weight units (exact for integer weights)
        credit = [c + w for c, w in zip(credit, weights)]
        best = max(range(len(weights)), key=lambda k: (credit[k], -k))
        credit[best] -= total
        out.append(best)
    return out


class MixtureDataset(Dataset):
    """Weighted mixture of streams; ``dataset[i]`` is the ``i``-th sample of the current epoch.

    Args:
        streams: the task streams (see :class:`Stream`).
        weights: relative frequency of each stream (default equal).
        length: positions per epoch (default: sum of stream lengths).
        seed: recipe seed.
    """

    def __init__(self, *, streams: Sequence[Stream], weights: Sequence[float] | None = None,
                 length: int | None = None, seed: int = 0) -> None:
        if not streams:
            raise ValueError("MixtureDataset needs at least one stream")
        for stream in streams:
            if len(stream) == 0:
                raise ValueError(f"stream {stream.name!r} is empty")
        self.streams = list(streams)
        self.weights = list(weights) if weights is not None else [1.0] * len(streams)
        self.length = int(length) if length is not None else sum(len(s) for s in streams)
        self.seed = int(seed)
        self.epoch = 0
        self.schedule = stream_schedule(self.weights, self.length)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        generator = sample_generator("sample", self.seed, self.epoch, int(index))
        stream_id = self.schedule[index]
        stream = self.streams[stream_id]
        item = int(torch.randint(len(stream), (1,), generator=generator))
        sample = stream.sample(item, generator)
        sample["stream"] = stream_id
        return sample


class ShardedShuffleSampler(Sampler[int]):
    """Shuffled, rank-strided, ``drop_last`` sampler that can start mid-epoch (for resume).

    The permutation of epoch ``e`` is drawn from ``sample_generator("perm", seed, e)``; rank ``r`` of ``R`` takes
    positions ``r, r+R, ...`` of the first ``floor(N/R)·R`` entries. ``start`` skips that many of this rank's
    indices (set by the trainer when resuming).
    """

    def __init__(self, *, length: int, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.length, self.num_replicas, self.rank, self.seed, self.shuffle = length, num_replicas, rank, seed, shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def per_rank(self) -> int:
        return self.length // self.num_replicas

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.length, generator=sample_generator("perm", self.seed, self.epoch)).tolist()
        else:
            order = list(range(self.length))
        mine = order[: self.per_rank() * self.num_replicas][self.rank :: self.num_replicas]
        return iter(mine[self.start :])


def worker_seeder(seed: int, epoch: int, rank: int):
    """``worker_init_fn`` seeding python/numpy/torch global RNGs with ``stable_hash(seed, epoch, rank, worker_id)``."""
    return _WorkerSeeder(seed, epoch, rank)


class _WorkerSeeder:
    def __init__(self, seed: int, epoch: int, rank: int) -> None:
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __call__(self, worker_id: int) -> None:
        value = stable_hash("worker", self.seed, self.epoch, self.rank, worker_id)
        random.seed(value)
        np.random.seed(value % (2**32))
        torch.manual_seed(value)
