import math

import pytest
import torch
from torch import nn

from anyrestore.archs.registry import IMAGENET_MEAN, IMAGENET_STD, ModelMeta
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.masking import apply_mask, batch_mask, hidden_count, masked_l1, random_pixel_mask
from anyrestore.methods.ram.pretrain import RamPretrainObjective, step_generator

RAM_META = ModelMeta(pad_multiple=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)


@pytest.mark.parametrize("size, ratio, expected", [(64, 0.5, 2048), (128, 0.5, 8192), (64, 0.6, 2458),
                                                   (64, 0.2, 820), (10, 0.3, 30)])
def test_mask_has_exact_hidden_count(size, ratio, expected, generator):
    for _ in range(3):
        mask = random_pixel_mask(size, size, ratio=ratio, generator=generator)
        assert mask.shape == (size, size) and mask.dtype == torch.float32
        assert int(mask.sum()) == expected
        assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_hidden_count_ignores_float_noise():
    assert 0.07 * 100 > 7  # the float product overshoots...
    assert hidden_count(100, 0.07) == 7  # ...but the count does not


def test_patch_masks_hide_whole_cells(generator):
    mask = random_pixel_mask(64, 64, ratio=0.5, patch_size=4, generator=generator)
    cells = mask.view(16, 4, 16, 4).permute(0, 2, 1, 3).reshape(256, 16)
    assert torch.all(cells.min(dim=1).values == cells.max(dim=1).values)  # constant inside each 4x4 cell
    assert int(cells[:, 0].sum()) == 128
    odd = random_pixel_mask(10, 7, ratio=0.5, patch_size=4, generator=generator)
    assert odd.shape == (10, 7)


def test_masks_depend_only_on_the_generator():
    a = random_pixel_mask(32, 32, generator=torch.Generator().manual_seed(5))
    b = random_pixel_mask(32, 32, generator=torch.Generator().manual_seed(5))
    c = random_pixel_mask(32, 32, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batch_mask_is_shared_unless_per_sample(generator):
    shared = batch_mask(4, 16, 16, generator=generator)
    assert shared.shape == (4, 16, 16)
    assert all(torch.equal(shared[0], shared[i]) for i in range(4))
    separate = batch_mask(4, 16, 16, per_sample=True, generator=generator)
    assert not all(torch.equal(separate[0], separate[i]) for i in range(1, 4))
    assert torch.all(separate.sum(dim=(1, 2)) == 128)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_bad_ratio_is_a_config_error(ratio, generator):
    with pytest.raises(ConfigError):
        random_pixel_mask(8, 8, ratio=ratio, generator=generator)


def test_apply_mask_uses_zero_token_on_all_channels(generator):
    x = torch.randn(2, 3, 8, 8)
    mask = batch_mask(2, 8, 8, generator=generator)
    out = apply_mask(x, mask)
    hidden = mask[:, None].expand_as(x).bool()
    assert torch.all(out[hidden] == 0)
    assert torch.equal(out[~hidden], x[~hidden])
    # zero in normalised space is the ImageNet-mean grey
    grey = RAM_META.denormalize(out)[0, :, mask[0].bool()]
    assert torch.allclose(grey, torch.tensor(IMAGENET_MEAN)[:, None].expand_as(grey), atol=1e-6)
    token = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    out = apply_mask(x, mask, token)
    assert torch.equal(out[0, :, mask[0].bool()][:, 0], torch.tensor([1.0, 2.0, 3.0]))


def test_masked_l1_equals_hand_computation():
    out = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]).repeat(1, 3, 1, 1)
    out[0, 1] += 1  # channel 1 off by one more
    target = torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # hidden elements: pixels (0,0)=1 and (1,1)=4 in channels 0 and 2, 2 and 5 in channel 1
    expected = (1 + 4 + 2 + 5 + 1 + 4) / (2 + 1e-5) / 3
    assert masked_l1(out, target, mask).item() == pytest.approx(expected, rel=1e-7)
    assert masked_l1(out, target, mask[0]).item() == pytest.approx(expected, rel=1e-7)


def test_only_hidden_pixels_receive_gradient(generator):
    out = torch.randn(2, 3, 8, 8, requires_grad=True)
    mask = batch_mask(2, 8, 8, generator=generator)
    masked_l1(out, torch.randn(2, 3, 8, 8), mask).backward()
    hidden = mask[:, None].expand_as(out).bool()
    assert torch.all(out.grad[~hidden] == 0)
    assert torch.all(out.grad[hidden].abs() > 0)


class _Recorder(nn.Module):
    """An affine map with learnable scalars that remembers what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.shift = nn.Parameter(torch.tensor(0.1))
        self.meta = RAM_META
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return x * self.scale + self.shift


def _batch(generator, b=2, s=16):
    gt = torch.rand(b, 3, s, s, generator=generator)
    lq = (gt + 0.1 * torch.randn(b, 3, s, s, generator=generator)).clamp(0, 1)
    return {"lq": lq, "gt": gt}


def test_objective_masks_the_normalised_input_and_scores_hidden_pixels(generator):
    model, batch = _Recorder(), _batch(generator)
    objective = RamPretrainObjective(seed=3)
    result = objective(model, batch)
    mask = objective.draw_mask(2, 16, 16, generator=step_generator(3, 0, 0))
    hidden = mask[:, None].expand(2, 3, 16, 16).bool()
    lq_n, gt_n = RAM_META.normalize(batch["lq"]), RAM_META.normalize(batch["gt"])
    assert torch.all(model.seen[hidden] == 0)
    assert torch.equal(model.seen[~hidden], lq_n[~hidden])
    expected = (0.5 * model.seen + 0.1 - gt_n).abs()[hidden].sum() / (mask.sum() + 1e-5) / 3
    assert result["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert result["mask_fraction"].item() == 0.5
    result["loss"].backward()
    assert model.shift.grad is not None and model.shift.grad != 0


def test_objective_can_pretrain_on_gt_only(generator):
    model, batch = _Recorder(), _batch(generator)
    objective = RamPretrainObjective(pretrain_input="gt", seed=1)
    objective(model, batch)
    mask = objective.draw_mask(2, 16, 16, generator=step_generator(1, 0, 0))[:, None].expand(2, 3, 16, 16).bool()
    assert torch.equal(model.seen[~mask], RAM_META.normalize(batch["gt"])[~mask])


def test_objective_mask_stream_resumes_exactly(generator):
    model, batch = _Recorder(), _batch(generator)
    straight = RamPretrainObjective(seed=7)
    seen = []
    for _ in range(4):
        straight(model, batch)
        seen.append(model.seen.clone())
    assert not torch.equal(seen[0], seen[1])  # a new mask every step
    resumed = RamPretrainObjective(seed=7)
    resumed.load_state_dict(straight.state_dict() | {"step": 2})
    resumed(model, batch)
    assert torch.equal(model.seen, seen[2])
    explicit = RamPretrainObjective(seed=7)
    explicit(model, {**batch, "iteration": 3})
    assert torch.equal(model.seen, seen[3])
    with pytest.raises(ConfigError):
        RamPretrainObjective(seed=8).load_state_dict(straight.state_dict())


def test_objective_per_sample_masks_and_patches(generator):
    model, batch = _Recorder(), _batch(generator, b=3)
    RamPretrainObjective(per_sample_mask=True, seed=0)(model, batch)
    hidden = model.seen[:, 0] == 0
    assert not torch.equal(hidden[0], hidden[1])
    assert torch.all(hidden.sum(dim=(1, 2)) >= 128)
    RamPretrainObjective(mask_patch_size=4, mask_ratio=0.25, seed=0)(model, batch)
    assert int((model.seen[0, 0] == 0).sum()) == 16 * math.ceil(0.25 * 16)


@pytest.mark.parametrize("kwargs", [{"pretrain_input": "clean"}, {"mask_ratio": 1.0}, {"mask_patch_size": 0}])
def test_objective_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        RamPretrainObjective(**kwargs)


def test_objective_uses_the_trainer_generator_by_default(generator):
    model, batch = _Recorder(), _batch(generator)
    objective = RamPretrainObjective()
    objective(model, {**batch, "iteration": 5, "generator": torch.Generator().manual_seed(42)})
    expected = objective.draw_mask(2, 16, 16, generator=torch.Generator().manual_seed(42))
    assert torch.equal(model.seen[:, 0] == 0, expected.bool())
