from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from anyrestore.data.datasets import collate
from anyrestore.data.sampling import (MixtureDataset, ShardedShuffleSampler, sample_generator, stable_hash,
                                      stream_schedule, worker_seeder)


class CountingStream:
    """Stand-in stream: the sample's value records (stream id, item index) and one random draw."""

    def __init__(self, name, length, value):
        self.name, self.length, self.value = name, length, value

    def __len__(self):
        return self.length

    def sample(self, index, generator):
        noise = torch.rand(3, 2, 2, generator=generator)
        return {"lq": noise, "gt": torch.full((3, 2, 2), float(self.value)),
                "label": {"type": self.name, "class_index": self.value, "item": index}, "name": f"{self.name}{index}"}


def test_stream_schedule_equal_and_weighted():
    assert stream_schedule([1, 1, 1], 9) == [0, 1, 2] * 3  # ram.md D6: stream = i mod K
    counts = Counter(stream_schedule([3, 1], 400))
    assert counts == {0: 300, 1: 100}


def test_items_uniform_over_whole_stream_and_reproducible():
    big, small = CountingStream("big", 1000, 0), CountingStream("small", 3, 1)
    data = MixtureDataset(streams=[big, small], length=2000, seed=1)
    items = Counter(data[i]["label"]["item"] for i in range(0, 2000, 2))  # the 'big' positions
    assert len(items) > 600  # drawn over the whole stream, not its first few files
    a = data[7]
    assert torch.equal(a["lq"], MixtureDataset(streams=[big, small], length=2000, seed=1)[7]["lq"])
    data.set_epoch(1)
    assert not torch.equal(a["lq"], data[7]["lq"])


def test_sharded_sampler_partitions_and_resumes():
    ranks = [ShardedShuffleSampler(length=21, num_replicas=2, rank=r, seed=4) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    seen = [list(s) for s in ranks]
    assert len(seen[0]) == len(seen[1]) == 10 and not set(seen[0]) & set(seen[1])
    single = ShardedShuffleSampler(length=21, seed=4)
    single.set_epoch(3)
    full = list(single)
    assert sorted(seen[0] + seen[1]) == sorted(full[:20])
    ranks[0].set_epoch(3, start=4)
    assert list(ranks[0]) == seen[0][4:] and len(ranks[0]) == 6


def test_batches_do_not_depend_on_worker_count():
    data = MixtureDataset(streams=[CountingStream("a", 5, 0), CountingStream("b", 7, 1)], length=16, seed=0)
    sampler = ShardedShuffleSampler(length=16, seed=0)

    def run(workers):
        loader = DataLoader(data, batch_size=4, sampler=sampler, num_workers=workers, collate_fn=collate,
                            worker_init_fn=worker_seeder(0, 0, 0))
        return [b["lq"] for b in loader]

    single, multi = run(0), run(2)
    assert len(single) == len(multi) == 4 and all(torch.equal(x, y) for x, y in zip(single, multi))


def test_worker_seeds_differ_by_epoch_rank_worker():
    seeds = {stable_hash("worker", 0, e, r, w) for e in range(2) for r in range(2) for w in range(2)}
    assert len(seeds) == 8
    assert stable_hash(1, "a") == stable_hash(1, "a") != stable_hash(1, "b")
    assert torch.equal(torch.rand(3, generator=sample_generator(1, 2)), torch.rand(3, generator=sample_generator(1, 2)))


def test_empty_stream_rejected():
    with pytest.raises(ValueError, match="empty"):
        MixtureDataset(streams=[CountingStream("e", 0, 0)])
