import math

import pytest
import torch
from torch import nn

from anyrestore.archs.registry import build_model, list_presets
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.finetune import enumerate_layers, read_ranking, write_ranking
from anyrestore.methods.ram.mac import (
    MacSettings,
    edge_energy,
    layer_conductance,
    path_alphas,
    rank_layers,
    soft_visibility,
    sort_ranking,
)


class _Tied(nn.Module):
    """Owns a parameter and returns its child's output tensor, like SwinIR's attn / attn.proj pair."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, 4, 1, 1), 0.9))
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.proj(x * self.scale)


class _Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.mid = _Tied()
        self.dead = nn.Conv2d(4, 4, 1)  # runs, but its output never reaches the result
        self.unused = nn.Conv2d(4, 4, 1)  # never runs
        self.last = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        h = torch.tanh(self.first(x))
        h = torch.tanh(self.mid(h))
        self.dead(h)
        return self.last(h)


def _chain(seed=0):
    torch.manual_seed(seed)
    return _Chain()


def _images(n, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]


def test_path_alphas_and_soft_mask():
    alphas = path_alphas(200, 0.5)
    assert alphas[0] == 0.5 and alphas[-1] == 0.9975 and len(alphas) == 200
    assert alphas[1] - alphas[0] == pytest.approx(0.0025)
    order = torch.randperm(4096, generator=torch.Generator().manual_seed(0))
    for alpha in (alphas[0], alphas[1], alphas[57], alphas[-1]):
        m = soft_visibility(order, alpha, 1e4)
        n = math.ceil(alpha * 4096)
        admitted = m[order[:n]]
        assert torch.all(admitted > 0.5) and torch.all(m[order[n:]] == 0)
        assert torch.all(admitted[:-4] > 0.999)  # only the newest few pixels are visibly fractional
    assert int((soft_visibility(order, alphas[1], 1e4) > 0).sum()) == 2059


def test_edge_energy_matches_a_loop():
    o = torch.randn(2, 3, 5, 6)
    total = 0.0
    for b in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    dv, dh = o[b, c, h, w] - o[b, c, h + 1, w], o[b, c, h, w] - o[b, c, h, w + 1]
                    total += math.sqrt(dv**2 + dh**2 + 1e-12)
    assert edge_energy(o).item() == pytest.approx(total, rel=1e-5)
    flat = torch.zeros(1, 1, 3, 3, requires_grad=True)
    edge_energy(flat).backward()
    assert torch.isfinite(flat.grad).all()  # eps avoids NaN gradients on flat images


def _reference_scores(model, images, layers, steps, seed, start_ratio=0.5, k=1e4):
    """Slow reference: one layer at a time, mask built pixel by pixel in Python."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(im.shape[1] * im.shape[2], generator=g) for im in images]
    scores = {}
    for layer in layers:
        total = 0.0
        for im, order in zip(images, orders):
            hw = order.numel()
            cond, prev = None, None
            for j in range(steps):
                alpha = (1 - start_ratio) + start_ratio * j / steps
                vis = torch.zeros(hw, dtype=torch.float64)
                for i in range(hw):
                    if i < math.ceil(alpha * hw):
                        vis[order[i]] = 1 / (1 + math.exp(-k * (alpha - i / hw)))
                x = (vis.view(1, 1, *im.shape[1:]).float() * im[None]).requires_grad_(True)
                box = {}
                handle = model.get_submodule(layer).register_forward_hook(lambda m, a, o: box.setdefault("y", o))
                out = model(x)
                handle.remove()
                f = torch.sqrt((out[:, :, :-1, :-1] - out[:, :, 1:, :-1]) ** 2
                               + (out[:, :, :-1, :-1] - out[:, :, :-1, 1:]) ** 2 + 1e-12).sum()
                (grad,) = torch.autograd.grad(f, box["y"])
                y = box["y"].detach()
                if prev is not None:
                    cond = grad * (y - prev) if cond is None else cond + grad * (y - prev)
                prev = y
            total += cond.abs().mean().item()
        scores[layer] = total
    return scores


def test_mac_scores_equal_a_slow_per_layer_reference():
    model, images = _chain(), _images(2)
    analysis = rank_layers(model, images, settings=MacSettings(total_step=12, seed=4))
    scores = dict(zip(analysis.ranking.names, analysis.ranking.scores))
    reference = _reference_scores(model, images, ["first", "mid.proj", "last"], steps=12, seed=4)
    for layer, value in reference.items():
        assert scores[layer] == pytest.approx(value, rel=1e-5), layer
    assert scores["dead"] == 0 and scores["unused"] == 0  # no influence on the output -> 0
    assert scores["first"] > 0 and scores["last"] > 0


def test_tied_layers_share_scores_and_ties_sort_by_descending_index():
    analysis = rank_layers(_chain(), _images(1), settings=MacSettings(total_step=6))
    names, scores = analysis.ranking.names, analysis.ranking.scores
    assert scores[names.index("mid")] == scores[names.index("mid.proj")]
    # ties keep descending enumeration order: mid.proj (2) before mid (1); unused (4) before dead (3)
    assert names.index("mid.proj") < names.index("mid")
    assert names.index("unused") < names.index("dead")
    ranking = sort_ranking(["a", "b", "c", "d"], [1.0, 2.0, 1.0, 0.5])
    assert ranking.names == ["b", "c", "a", "d"] and ranking.indices == [1, 2, 0, 3]


def test_cost_is_steps_times_images_passes():
    model, images = _chain(), _images(3)
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    analysis = rank_layers(model, images, settings=MacSettings(total_step=7))
    assert len(calls) == 21 == analysis.passes
    calls.clear()
    rank_layers(model, images, settings=MacSettings(total_step=7, batch_size=3))
    assert len(calls) == 7


@pytest.mark.parametrize("method", ["mac", "ig"])
def test_batched_runs_equal_batch_one_runs(method):
    model, images = _chain(), _images(3)
    one = rank_layers(model, images, settings=MacSettings(method=method, total_step=10, seed=2))
    three = rank_layers(model, images, tasks=["a", "b", "a"],
                        settings=MacSettings(method=method, total_step=10, seed=2, batch_size=3))
    s1 = dict(zip(one.ranking.names, one.ranking.scores))
    s3 = dict(zip(three.ranking.names, three.ranking.scores))
    for name in s1:
        assert s3[name] == pytest.approx(s1[name], rel=1e-4, abs=1e-12)
    per_task = three.per_task
    assert set(per_task) == {"a", "b"}
    assert per_task["a"]["first"] + per_task["b"]["first"] == pytest.approx(s3["first"], rel=1e-9)


class _LinearRamp(nn.Module):
    """A linear chain whose output rides on a steep fixed ramp, so the edge energy is (almost) affine in
    every layer output: the Riemann sum of the conductance then telescopes to F(end) − F(start)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.mid = _Tied()
        self.last = nn.Conv2d(4, 3, 3, padding=1)
        self.register_buffer("ramp", 1e6 * torch.arange(12.0).view(1, 1, 1, 12).expand(1, 1, 12, 12).clone())

    def forward(self, x):
        return self.last(self.mid(self.first(x))) + self.ramp


def test_completeness_for_layers_every_path_crosses():
    model, images = _LinearRamp().double(), _images(1, size=12)
    settings = MacSettings(total_step=50)
    x = images[0][None].double()
    cond = layer_conductance(model, x, settings=settings, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(144, generator=torch.Generator().manual_seed(0))
    alphas = path_alphas(50, 0.5)
    ends = []
    with torch.no_grad():
        for alpha in (alphas[0], alphas[-1]):
            m = soft_visibility(order, alpha, settings.k).view(1, 1, 12, 12)
            ends.append(edge_energy(model(m * x), settings.eps).item())
    delta = ends[1] - ends[0]
    assert abs(delta) > 0.05
    for layer in ("first", "mid.proj", "last"):
        assert cond[layer].sum().item() == pytest.approx(delta, rel=2e-3), layer
    assert model.training  # mode and requires_grad are restored
    assert all(p.requires_grad for p in model.parameters())
    assert layer_conductance(_chain(), x.float(), settings=settings, generator=torch.Generator())["unused"] is None


def test_ig_accumulates_raw_gradients_on_the_linear_path():
    model, images = _chain(), _images(1)
    x = images[0][None]
    cond = layer_conductance(model, x, settings=MacSettings(method="ig", total_step=4),
                             generator=torch.Generator().manual_seed(0))
    model.eval()
    expected = 0
    for alpha in path_alphas(4, 0.5):
        xin = (alpha * x).requires_grad_(True)
        box = {}
        handle = model.last.register_forward_hook(lambda m, a, o: box.setdefault("y", o))
        f = edge_energy(model(xin))
        handle.remove()
        expected = expected + torch.autograd.grad(f, box["y"])[0]
    assert torch.allclose(cond["last"], expected, rtol=1e-5, atol=1e-7)


def test_random_ranking_is_a_seeded_permutation(tmp_path):
    model = _chain()
    a = rank_layers(model, [], settings=MacSettings(method="random", seed=1))
    b = rank_layers(model, [], settings=MacSettings(method="random", seed=1))
    c = rank_layers(model, [], settings=MacSettings(method="random", seed=2))
    assert a.ranking.names == b.ranking.names != c.ranking.names
    assert sorted(a.ranking.names) == sorted(enumerate_layers(model))
    assert a.ranking.scores == [0.0] * 6 and a.passes == 0
    assert [enumerate_layers(model)[i] for i in a.ranking.indices] == a.ranking.names
    write_ranking(a.ranking, tmp_path, extra=a.json_extra())
    back = read_ranking(tmp_path)
    assert back.names == a.ranking.names and back.info["method"] == "random"


def test_analysis_files_round_trip(tmp_path):
    analysis = rank_layers(_chain(), _images(2), tasks=["noise", "blur"], settings=MacSettings(total_step=5))
    write_ranking(analysis.ranking, tmp_path, extra=analysis.json_extra())
    back = read_ranking(tmp_path)
    assert back.names == analysis.ranking.names and back.indices == analysis.ranking.indices
    assert back.scores == pytest.approx(analysis.ranking.scores, abs=5e-7)
    assert back.info["settings"]["total_step"] == 5 and back.info["settings"]["mode"] == "eval"


def test_bad_settings_and_repeated_layers():
    with pytest.raises(ConfigError):
        MacSettings(method="gradcam")
    with pytest.raises(ConfigError):
        MacSettings(total_step=1)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    with pytest.raises(ConfigError, match="ran 2 times"):
        rank_layers(Twice(), _images(1), settings=MacSettings(total_step=2))


@pytest.mark.skipif("swinir-ram-tiny" not in {p.name for p in list_presets()}, reason="RAM-SwinIR not registered")
def test_mac_on_tiny_ram_swinir():
    torch.manual_seed(0)
    model = build_model("swinir-ram-tiny")
    analysis = rank_layers(model, _images(1, size=16), settings=MacSettings(total_step=6))
    scores = dict(zip(analysis.ranking.names, analysis.ranking.scores))
    assert len(scores) == len(enumerate_layers(model))
    for name in scores:
        if name.endswith(".attn"):
            assert scores[name] == scores[name + ".proj"]
    assert scores["conv_last"] > 0 and scores["conv_first"] > 0


def test_layer_independent_of_the_input_scores_zero():
    class Bias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.value = nn.Parameter(torch.ones(1, 3, 1, 1))

        def forward(self):
            return self.value * 2

    class WithConstant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bias = Bias()

        def forward(self, x):
            return self.conv(x) + self.bias()

    torch.manual_seed(0)
    analysis = rank_layers(WithConstant(), _images(1), settings=MacSettings(total_step=3))
    scores = dict(zip(analysis.ranking.names, analysis.ranking.scores))
    assert scores["bias"] == 0 and scores["conv"] > 0


def test_in_place_modified_layer_output_is_refused():
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            y.mul_(2)
            return y

    with pytest.raises(ConfigError, match="modified in place"):
        rank_layers(InPlace(), _images(1), settings=MacSettings(total_step=2))


@pytest.mark.skipif("promptir-ram-tiny" not in {p.name for p in list_presets()}, reason="RAM-PromptIR not registered")
def test_mac_on_tiny_ram_promptir_ties():
    torch.manual_seed(0)
    model = build_model("promptir-ram-tiny")
    analysis = rank_layers(model, _images(1, size=16), settings=MacSettings(total_step=3))
    scores = dict(zip(analysis.ranking.names, analysis.ranking.scores))
    attn = [n for n in scores if n.endswith(".attn")]
    assert attn and all(scores[n] == scores[n + ".project_out"] for n in attn)
    prompts = [n for n in scores if n.startswith("prompt") and "." not in n]
    assert prompts and all(scores[n] == scores[n + ".conv3x3"] for n in prompts)
    assert scores["output"] > 0 and scores["patch_embed.proj"] > 0


@pytest.mark.parametrize("preset", ["swinir-ram-tiny", "promptir-ram-tiny"])
def test_batched_runs_equal_batch_one_runs_on_ram_backbones(preset):
    # window / token layouts must stay batch-major for the per-image means to split correctly (ram.md §5.5)
    torch.manual_seed(0)
    model = build_model(preset)
    images = _images(2, size=16, seed=3)
    one = rank_layers(model, images, settings=MacSettings(total_step=3, seed=1))
    two = rank_layers(model, images, settings=MacSettings(total_step=3, seed=1, batch_size=2))
    s1 = dict(zip(one.ranking.names, one.ranking.scores))
    s2 = dict(zip(two.ranking.names, two.ranking.scores))
    assert any(v > 0 for v in s1.values())
    for name, value in s1.items():
        assert s2[name] == pytest.approx(value, rel=1e-4, abs=1e-9), name
