import numpy as np
import pytest
import torch

from anyrestore.data.datasets import (DatasetLayoutError, PairedStream, SyntheticStream, augment, augment_then_crop,
                                      collate, gt_key, pad_to, pair_folders, random_crop)
from engine_fixtures import make_paired_tree, write_png


def test_pairing_rules(tmp_path):
    from pathlib import Path

    assert gt_key(Path("0001_0.8_0.2.jpg"), "prefix", ".png") == "0001.png"
    assert gt_key(Path("rain-12.png"), "rain") == "norain-12"
    assert gt_key(Path("low00042.png"), "lol_real") == "normal00042"
    img = np.zeros((8, 8, 3), np.uint8)
    for name in ("0001_0.8_0.2.jpg", "0001_0.9_0.1.jpg", "0002_1_0.2.jpg"):
        write_png(tmp_path / "hazy" / name, img)
    for name in ("0001.png", "0002.png"):
        write_png(tmp_path / "gt" / name, img)
    pairs = pair_folders(tmp_path / "hazy", tmp_path / "gt", rule="prefix", gt_suffix=".png")
    assert [(a.name, b.name) for a, b in pairs] == [("0001_0.8_0.2.jpg", "0001.png"), ("0001_0.9_0.1.jpg", "0001.png"),
                                                    ("0002_1_0.2.jpg", "0002.png")]
    with pytest.raises(DatasetLayoutError, match="3 of 3 files .* have no partner"):
        pair_folders(tmp_path / "hazy", tmp_path / "gt", rule="name")
    with pytest.raises(DatasetLayoutError, match="folder not found"):
        pair_folders(tmp_path / "nope", tmp_path / "gt")


def test_crop_flip_rot_apply_same_transform():
    gen = torch.Generator().manual_seed(0)
    a = torch.arange(3 * 10 * 12, dtype=torch.float32).view(3, 10, 12)
    lq, gt = random_crop([a, a + 1], 6, gen)
    assert lq.shape == (3, 6, 6) and torch.equal(gt, lq + 1)
    codes = set()
    for _ in range(40):
        x, y = augment([lq, lq * 2], "flip_rot", gen)
        assert torch.equal(y, x * 2)
        codes.add(tuple(x.flatten()[:3].tolist()))
    assert len(codes) == 8  # all 8 dihedral transforms occur
    small = pad_to(torch.rand(3, 3, 5), 8)
    assert small.shape == (3, 8, 8)


def test_paired_stream_and_collate(tmp_path):
    lq_dir, gt_dir = make_paired_tree(tmp_path, count=3)
    stream = PairedStream(pairs=pair_folders(lq_dir, gt_dir, rule="name"), crop=16, name="denoise", class_index=2)
    gen = torch.Generator().manual_seed(0)
    samples = [stream.sample(i, gen) for i in range(3)]
    batch = collate(samples)
    assert batch["lq"].shape == (3, 3, 16, 16) and batch["gt"].dtype == torch.float32
    assert batch["class_index"].tolist() == [2, 2, 2] and batch["labels"][0]["type"] == "denoise"
    assert 0.0 <= float(batch["lq"].min()) and float(batch["lq"].max()) <= 1.0


def test_synthetic_stream_degrades_crop_and_labels():
    class Flat:
        def __len__(self):
            return 4

        def image(self, index, generator):
            return torch.full((3, 20, 20), 0.5)

    def sampler(clean, generator):
        return clean + 0.1, [{"type": "shift", "level": 0.1, "params": {"d": 0.1}, "class_index": 3}]

    stream = SyntheticStream(source=Flat(), sampler=sampler, crop=8, name="s")
    sample = stream.sample(0, torch.Generator().manual_seed(0))
    assert sample["gt"].shape == (3, 8, 8)
    torch.testing.assert_close(sample["lq"], sample["gt"] + 0.1)
    assert sample["label"]["class_index"] == 3 and sample["label"]["type"] == "shift"
    identity = SyntheticStream(source=Flat(), sampler=None, crop=8).sample(1, torch.Generator())
    assert torch.equal(identity["lq"], identity["gt"]) and identity["label"]["type"] == "identity"


def test_synthetic_stream_with_real_sources_and_sampler():
    from anyrestore.engine.builders import build_stream
    from anyrestore.engine.config import StreamConfig

    cfg = StreamConfig(type="synthetic", source={"type": "dead_leaves", "size": 48}, degradation="noise:25", length=10)
    stream = build_stream(cfg, data_root=".", crop=32, augment="hflip")
    a = stream.sample(0, torch.Generator().manual_seed(5))
    b = stream.sample(0, torch.Generator().manual_seed(5))
    assert torch.equal(a["lq"], b["lq"]) and a["lq"].shape == (3, 32, 32)
    assert a["label"]["type"] == "noise" and not torch.equal(a["lq"], a["gt"])


def test_cached_generator_source_is_a_fixed_pool_independent_of_access_order():
    from anyrestore.engine.builders import SourceAdapter

    class Counter:
        calls = 0

        def sample(self, generator):
            Counter.calls += 1
            return torch.rand(3, 4, 4, generator=generator)

    a = SourceAdapter(Counter(), length=3, cache=True, cache_key="dl")
    b = SourceAdapter(Counter(), length=3, cache=True, cache_key="dl")
    first = [a.image(i, torch.Generator().manual_seed(i + 100)) for i in (0, 1, 2)]
    second = [b.image(i, torch.Generator()) for i in (2, 0, 1)]
    assert torch.equal(first[0], second[1]) and torch.equal(first[2], second[0])
    assert torch.equal(a.image(0, torch.Generator().manual_seed(7)), first[0])
    assert Counter.calls == 6
    with pytest.raises(Exception, match="no natural length"):
        SourceAdapter(Counter())


@pytest.mark.parametrize("mode", ["none", "hflip", "flip_rot"])
def test_augment_then_crop_equals_augmenting_the_whole_image_then_cropping(mode):
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 40, 64), (3, 64, 40), (3, 33, 33), (3, 20, 50), (3, 12, 9)]  # last two need padding
    for trial in range(60):
        image = torch.rand(shapes[trial % len(shapes)], generator=gen)
        for size in (16, 32, None):
            seed = 1000 * trial + (size or 0)
            a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            (plain,) = augment([image], mode, a)
            if size is not None:
                (plain,) = random_crop([plain], size, a)
            fast = augment_then_crop(image, mode, size, b)
            assert torch.equal(fast, plain), (mode, trial, size)
            assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))  # same draws consumed
