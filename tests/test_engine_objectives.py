import copy

import numpy as np
import pytest
import torch
from torch import nn

from anyrestore.archs.registry import ModelMeta
from anyrestore.engine.objectives import build_objective, list_objectives
from anyrestore.errors import ConfigError
from anyrestore.reports.grids import make_grid
from anyrestore.reports.tables import csv_text, markdown_table


class Shift(nn.Module):
    def __init__(self, meta=None):
        super().__init__()
        self.meta = meta or ModelMeta()

    def forward(self, x):
        return x + 0.25


def batch():
    gen = torch.Generator().manual_seed(0)
    return {"lq": torch.rand(2, 3, 8, 8, generator=gen), "gt": torch.rand(2, 3, 8, 8, generator=gen)}


def test_registry_lists_baselines_and_rejects_bad_specs():
    assert {"l1", "charbonnier", "supervised"} <= set(list_objectives())
    with pytest.raises(ConfigError, match="objective.type: missing"):
        build_objective({})
    with pytest.raises(ConfigError, match="loss must be 'l1', 'charbonnier' or 'psnr'"):
        build_objective({"type": "supervised", "loss": "l2"})


def test_l1_charbonnier_fft_values():
    b = batch()
    pred = b["lq"] + 0.25
    out = build_objective({"type": "l1"})(Shift(), b)
    torch.testing.assert_close(out["loss"], (pred - b["gt"]).abs().mean())
    eps = 1e-2
    out = build_objective({"type": "charbonnier", "eps": eps})(Shift(), b)
    torch.testing.assert_close(out["loss"], torch.sqrt((pred - b["gt"]) ** 2 + eps**2).mean())
    out = build_objective({"type": "l1", "fft_weight": 0.1})(Shift(), b)
    diff = torch.fft.rfft2(pred) - torch.fft.rfft2(b["gt"])
    fft = torch.cat([diff.real.abs().flatten(), diff.imag.abs().flatten()]).mean()
    torch.testing.assert_close(out["fft"], fft)
    torch.testing.assert_close(out["loss"], out["l1"] + 0.1 * fft)


def test_psnr_loss_is_minus_mean_per_sample_psnr():
    b = batch()
    pred = (b["lq"] + 0.25).clamp(0, 1)

    class ClampShift(Shift):
        def forward(self, x):
            return (x + 0.25).clamp(0, 1)

    out = build_objective({"type": "psnr", "eps": 1e-12})(ClampShift(), b)
    mse = ((pred - b["gt"]).double() ** 2).numpy().reshape(2, -1).mean(1)
    assert abs(out["loss"].item() - float((10 * np.log10(mse)).mean())) < 1e-4
    # Unlike L1, each sample's gradient is scaled by 1/MSE: a small-error sample weighs as much as a large one.
    small = {"lq": b["gt"] + 0.01, "gt": b["gt"]}
    large = {"lq": b["gt"] + 0.3, "gt": b["gt"]}
    grads = []
    for bb in (small, large):
        lq = bb["lq"].clone().requires_grad_(True)
        build_objective({"type": "psnr"})(nn.Identity(), {"lq": lq, "gt": bb["gt"]})["loss"].backward()
        grads.append(lq.grad.abs().sum().item())
    assert grads[0] > 20 * grads[1]


def test_model_space_uses_normalisation_metadata():
    meta = ModelMeta(pad_multiple=1, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    b = batch()
    model = Shift(meta)
    in_model_space = build_objective({"type": "l1"})(model, b)["loss"]
    expected = (meta.normalize(b["lq"]) + 0.25 - meta.normalize(b["gt"])).abs().mean()
    torch.testing.assert_close(in_model_space, expected)
    in_image_space = build_objective({"type": "l1", "space": "image"})(model, b)["loss"]
    torch.testing.assert_close(in_image_space, (meta.denormalize(meta.normalize(b["lq"]) + 0.25) - b["gt"]).abs().mean())


def test_grid_and_tables():
    grid = make_grid([torch.zeros(3, 4, 5), torch.ones(1, 6, 2)], gap=1)
    assert grid.shape == (3, 6, 8) and float(grid[0, 5, 0]) == 1.0 and float(grid[0, 0, 0]) == 0.0
    result = {"protocol": "p", "model": "m", "missing": [],
              "record": {"protocol": "ram", "crop_border": 4, "channel": "rgb", "quantize": "uint8",
                         "ssim_variant": "gauss11_valid", "y_channel": []},
              "benchmarks": {"a": {"psnr": 30.123, "ssim": 0.91234, "count": 2, "channel": "rgb"}},
              "columns": {"A": {"psnr": 30.123, "ssim": 0.91234, "complete": True}},
              "average": {"psnr": 30.123, "ssim": 0.91234}}
    table = markdown_table([result])
    assert "| m | 30.12/0.9123 | 30.12/0.9123 |" in table and "crop 4" in table
    assert csv_text([result]).splitlines()[1].startswith("m,p,a,30.1230,0.912340,2,ram,4,rgb,uint8")


def test_train_only_freezes_every_parameter_outside_the_named_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.meta = ModelMeta()
            self.intro = nn.Conv2d(3, 4, 1)
            self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)])
            self.ending = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            x = self.intro(x)
            for b in self.blocks:
                x = b(x)
            return self.ending(x)

    net = Net()
    objective = build_objective({"type": "psnr", "train_only": ["intro", "blocks.1"]})
    objective.prepare(net)
    trainable = sorted(n for n, p in net.named_parameters() if p.requires_grad)
    assert trainable == ["blocks.1.bias", "blocks.1.weight", "intro.bias", "intro.weight"]
    objective(net, batch())["loss"].backward()
    assert net.blocks[0].weight.grad is None and net.intro.weight.grad is not None
    build_objective({"type": "psnr"}).prepare(net)  # no train_only: leaves the model as it is
    assert sorted(n for n, p in net.named_parameters() if p.requires_grad) == trainable
    with pytest.raises(ConfigError, match="train_only names no parameters of the model: blocks.2, block"):
        build_objective({"type": "l1", "train_only": ["blocks.2", "block"]}).prepare(net)
    with pytest.raises(ConfigError, match="train_only must be a non-empty list"):
        build_objective({"type": "psnr", "train_only": "intro"})


def test_keep_outputs_except_supervises_other_samples_by_the_starting_model():
    net = nn.Sequential(nn.Conv2d(3, 3, 1))
    net.meta = ModelMeta()
    objective = build_objective({"type": "l1", "keep_outputs_except": ["snow"]})
    objective.prepare(net)
    b = batch()
    b["labels"] = [{"steps": [{"type": "noise"}, {"type": "snow"}]}, {"steps": [{"type": "noise"}]}]
    with torch.no_grad():
        start = net(b["lq"])
        net[0].bias.add_(0.1)  # training moved the model; the anchor stays where it started
        now = net(b["lq"])
    loss = objective(net, b)["loss"]
    expected = torch.cat([(now[0] - b["gt"][0]).abs().flatten(), (now[1] - start[1]).abs().flatten()]).mean()
    torch.testing.assert_close(loss, expected)
    b["labels"] = [{"steps": [{"type": "snow"}]}, {}]  # a sample without a label keeps its output too
    loss = objective(net, b)["loss"]
    expected = torch.cat([(now[0] - b["gt"][0]).abs().flatten(), (now[1] - start[1]).abs().flatten()]).mean()
    torch.testing.assert_close(loss, expected)
    # PSNR loss: a kept sample's MSE is its distance to the starting output plus that output's own MSE
    psnr_objective = build_objective({"type": "psnr", "keep_outputs_except": ["snow"], "eps": 1e-8})
    psnr_objective.prepare(copy.deepcopy(objective.anchor))  # the model as it started
    mse = lambda a, c: (a - c).pow(2).mean()  # noqa: E731
    expected = 10 * (torch.log10(mse(now[0], b["gt"][0]) + 1e-8)
                     + torch.log10(mse(now[1], start[1]) + mse(start[1], b["gt"][1]) + 1e-8)) / 2
    torch.testing.assert_close(psnr_objective(net, b)["loss"], expected)
    # keep_weight: a kept sample's distance costs that many times the same error
    heavier = build_objective({"type": "l1", "keep_outputs_except": ["snow"], "keep_weight": 4.0})
    heavier.prepare(copy.deepcopy(objective.anchor))
    expected = ((now[0] - b["gt"][0]).abs().mean() + 4 * (now[1] - start[1]).abs().mean()) / 2
    torch.testing.assert_close(heavier(net, b)["loss"], expected)
    with pytest.raises(ConfigError, match="keep_weight must be > 0 and needs keep_outputs_except"):
        build_objective({"type": "psnr", "keep_weight": 4.0})
    with pytest.raises(RuntimeError, match="needs prepare"):
        build_objective({"type": "psnr", "keep_outputs_except": ["snow"]})(net, b)
    with pytest.raises(ConfigError, match="keep_outputs_except must be a non-empty list"):
        build_objective({"type": "psnr", "keep_outputs_except": []})
