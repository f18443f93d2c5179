import pytest
import torch
from torch import nn

from anyrestore.archs.registry import build_model, list_presets
from anyrestore.engine.objectives import build_objective
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.finetune import (
    Ranking,
    apply_ranking,
    enumerate_layers,
    freeze_except,
    layer_param_counts,
    num_selected,
    read_ranking,
    write_ranking,
)


class _Attention(nn.Module):
    """Owns a parameter directly *and* has children, like SwinIR's WindowAttention."""

    def __init__(self) -> None:
        super().__init__()
        self.bias_table = nn.Parameter(torch.zeros(4))
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(4, 4)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 3, 4, 4))  # top-level: not a layer
        self.first = nn.Conv2d(3, 4, 1)
        self.blocks = nn.Sequential(nn.ModuleDict({"norm": nn.LayerNorm(4), "attn": _Attention()}), nn.ReLU(),
                                    nn.Linear(4, 4, bias=False))
        self.last = nn.Conv2d(4, 3, 1)


TOY_LAYERS = ["first", "blocks.0.norm", "blocks.0.attn", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.2",
              "last"]


def test_enumeration_follows_parameter_order_and_owner_paths():
    model = _Toy()
    assert enumerate_layers(model) == TOY_LAYERS
    counts = layer_param_counts(model)
    assert counts["blocks.0.attn"] == 4 and counts["blocks.0.attn.qkv"] == 60 and counts["blocks.2"] == 16
    assert "" not in counts


def test_num_selected_floors_the_product():
    assert [num_selected(263, r) for r in (0.1, 0.2, 0.3, 0.5, 1.0)] == [26, 52, 78, 131, 263]
    assert [num_selected(445, r) for r in (0.1, 0.3, 0.5)] == [44, 133, 222]
    with pytest.raises(ConfigError):
        num_selected(10, 0.0)


def test_freeze_matches_owner_paths_exactly():
    model = _Toy()
    report = freeze_except(model, ["blocks.0.attn", "last"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # selecting the attention module unfreezes only its own table, not its children (no prefix match)
    assert trainable == {"blocks.0.attn.bias_table", "last.weight", "last.bias"}
    assert (report.trainable_layers, report.num_layers) == (2, 7)
    assert report.trainable_params == 4 + 12 + 3
    assert report.total_params == sum(p.numel() for p in model.parameters())
    with pytest.raises(ConfigError):
        freeze_except(model, ["blocks.0.attn.qkv.weight"])


def test_ranking_files_round_trip(tmp_path):
    ranking = Ranking(names=["b", "a", "c"], indices=[1, 0, 2], scores=[3.25, 1.5, 0.0])
    write_ranking(ranking, tmp_path, extra={"method": "mac", "num_params": {"a": 5}})
    assert (tmp_path / "filter_name.txt").read_text() == "b\na\nc\n"
    assert (tmp_path / "filter_index.txt").read_text() == "1\n0\n2\n"
    assert (tmp_path / "filter_cond.txt").read_text() == "3.250000\n1.500000\n0.000000\n"
    back = read_ranking(tmp_path)
    assert (back.names, back.indices, back.scores) == (ranking.names, ranking.indices, ranking.scores)
    assert back.info["method"] == "mac" and back.info["format"] == "anyrestore.ram_ranking/1"
    assert not list(tmp_path.glob(".*.tmp"))


def test_official_style_ranking_is_used_in_file_order(tmp_path):
    # names only, scores out of order: the file order decides, nothing is re-sorted
    names = list(reversed(TOY_LAYERS))
    (tmp_path / "filter_name.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "filter_cond.txt").write_text("\n".join(str(i) for i in range(len(names))) + "\n")
    ranking = read_ranking(tmp_path)
    assert ranking.indices is None and ranking.select(0.3) == ["last", "blocks.2"]
    model = _Toy()
    report = apply_ranking(model, tmp_path, 0.3)
    assert report.trainable_layers == 2
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"last.weight", "last.bias",
                                                                          "blocks.2.weight"}


def test_ranking_must_match_the_model(tmp_path):
    (tmp_path / "filter_name.txt").write_text("\n".join(TOY_LAYERS[:-1] + ["nope"]) + "\n")
    with pytest.raises(ConfigError, match="1 unknown"):
        apply_ranking(_Toy(), tmp_path, 0.5)
    (tmp_path / "filter_name.txt").write_text("\n".join(TOY_LAYERS[:-1]) + "\n")
    with pytest.raises(ConfigError, match="1 missing"):
        apply_ranking(_Toy(), tmp_path, 0.5)
    with pytest.raises(ConfigError, match="no filter_name.txt"):
        read_ranking(tmp_path / "absent")
    (tmp_path / "filter_index.txt").write_text("0\n1\n")
    with pytest.raises(ConfigError, match="2 lines"):
        read_ranking(tmp_path)


def _meta_model(name):
    """A heavy preset built on the meta device (no memory); skipped until its architecture has landed."""
    if name not in {p.name for p in list_presets()}:
        pytest.skip(f"preset {name} is not registered yet")
    with torch.device("meta"):
        return build_model(name)


# ranks 1-26 of the shipped RAM-SwinIR MAC ranking (ram.md §11)
_L = "layers.{}.residual_group.blocks.{}."
SWINIR_TOP26 = [
    "conv_last", "patch_embed.norm", "conv_first", "layers.0.conv", _L.format(0, 0) + "norm2",
    _L.format(0, 0) + "mlp.fc2", "layers.2.conv", "layers.1.conv", "layers.3.conv", _L.format(0, 0) + "mlp.fc1",
    "layers.5.conv", _L.format(0, 2) + "attn", _L.format(0, 2) + "attn.proj", _L.format(0, 5) + "norm2",
    _L.format(0, 5) + "mlp.fc2", _L.format(0, 0) + "attn.proj", _L.format(0, 0) + "attn", "norm", "layers.4.conv",
    _L.format(1, 2) + "attn", _L.format(1, 2) + "attn.proj", _L.format(0, 3) + "attn", _L.format(0, 3) + "attn.proj",
    _L.format(0, 5) + "attn.proj", _L.format(0, 5) + "attn", _L.format(1, 3) + "attn.proj",
]


def test_ram_swinir_layers_and_official_10_percent_freeze(tmp_path):
    model = _meta_model("swinir-ram")
    layers = enumerate_layers(model)
    assert len(layers) == 263
    assert layers[:2] == ["conv_first", "patch_embed.norm"]
    assert layers[2:9] == [_L.format(0, 0) + s for s in
                           ("norm1", "attn", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")]
    assert [layers.index(f"layers.{i}.conv") for i in range(6)] == [44 + 43 * i for i in range(6)]
    assert layers[260:] == ["norm", "conv_after_body", "conv_last"]
    rest = [n for n in layers if n not in SWINIR_TOP26]
    (tmp_path / "filter_name.txt").write_text("\n".join(SWINIR_TOP26 + rest) + "\n")
    report = apply_ranking(model, tmp_path, 0.1)
    assert (report.trainable_layers, report.trainable_params) == (26, 2_155_053)
    assert not model.mask_token.requires_grad
    everything = freeze_except(model, layers)
    assert everything.trainable_params == 11_499_843 and not model.mask_token.requires_grad


def test_ram_promptir_layers_and_30_percent_freeze(tmp_path):
    model = _meta_model("promptir-ram")
    layers = enumerate_layers(model)
    assert len(layers) == 445
    assert layers[0] == "patch_embed.proj" and layers[1:4] == ["prompt1", "prompt1.linear_layer", "prompt1.conv3x3"]
    assert layers[229] == "up4_3.body.0" and layers[386] == "decoder_level1.1.norm2.body"
    assert layers[444] == "output"
    stages = {"encoder_level1": (10, 45), "down1_2": (46, 46), "encoder_level2": (47, 100), "latent": (157, 228),
              "noise_level3": (231, 239), "reduce_noise_level3": (240, 240), "decoder_level2": (307, 360),
              "noise_level1": (362, 370), "decoder_level1": (372, 407), "refinement": (408, 443)}
    for stage, (first, last) in stages.items():
        span = [i for i, n in enumerate(layers) if n == stage or n.startswith(stage + ".")]
        assert (span[0], span[-1], len(span)) == (first, last, last - first + 1), stage
    assert layers[11:20] == [f"encoder_level1.0.{s}" for s in ("attn", "attn.qkv", "attn.qkv_dwconv",
                             "attn.project_out", "norm2.body", "ffn.project_in", "ffn.dwconv", "ffn.project_out",)] \
        + ["encoder_level1.1.norm1.body"]
    (tmp_path / "filter_name.txt").write_text("\n".join(layers) + "\n")
    report = apply_ranking(model, tmp_path, 0.3)
    assert report.trainable_layers == 133
    counts = layer_param_counts(model)
    assert report.trainable_params == sum(counts[n] for n in layers[:133])


def test_finetune_objective_freezes_and_trains_only_selected_layers(tmp_path, capsys):
    model = _Toy()
    model.forward = lambda x: model.last(torch.relu(model.first(x)))
    write_ranking(Ranking(names=["last"] + [n for n in TOY_LAYERS if n != "last"]), tmp_path)
    objective = build_objective({"type": "ram_finetune", "ranking": str(tmp_path), "ratio": 0.2})
    assert objective.prepare(model) is None
    assert objective.report.trainable_layers == 1
    total = sum(p.numel() for p in model.parameters())
    assert f"1 of 7 layers trainable, 15 of {total:,} parameters" in capsys.readouterr().out  # reported to the user
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    batch = {"lq": torch.rand(2, 3, 4, 4, generator=g), "gt": torch.rand(2, 3, 4, 4, generator=g)}
    out = objective(model, batch)
    assert out["loss"].item() == pytest.approx((model.last(torch.relu(model.first(batch["lq"]))) - batch["gt"])
                                               .abs().mean().item())
    out["loss"].backward()
    optimizer.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == name.startswith("last."), name


def test_finetune_objective_options():
    with pytest.raises(ConfigError):
        build_objective({"type": "ram_finetune", "ratio": 0.1})  # a ratio below 1 needs a ranking
    with pytest.raises(ConfigError):
        build_objective({"type": "ram_finetune", "ranking": "x", "ratio": 1.5})
    model = _Toy()
    objective = build_objective({"type": "ram_finetune"})
    objective.prepare(model)
    assert objective.report.trainable_params == sum(p.numel() for p in model.parameters()) - model.token.numel()


# enumeration indices of the 133 layers the shipped RAM-PromptIR ranking selects at 30 % (ram.md §11; boundary:
# 347 = decoder_level2.4.attn.project_out in, its tied partner 344 out)
PROMPTIR_SELECTED_30 = [
    0, 2, 10, 11, 13, 14, 15, 18, 19, 20, 23, 24, 27, 29, 32, 33, 34, 35, 36, 37, 38, 41, 42, 43, 44, 45, 46, 52, 55,
    61, 64, 70, 73, 79, 82, 88, 91, 97, 100, 101, 156, 229, 230, 240, 249, 258, 264, 267, 273, 276, 282, 285, 291,
    294, 295, 296, 302, 305, 306, 312, 315, 321, 324, 330, 333, 339, 342, 343, 347, 348, 351, 352, 357, 360, 361,
    362, 363, 366, 367, 370, 371, 372, 373, 376, 377, 378, 379, 380, 381, 382, 385, 386, 387, 388, 389, 390, 391,
    392, 393, 394, 395, 396, 397, 398, 399, 400, 403, 404, 405, 406, 407, 408, 409, 412, 413, 414, 415, 416, 417,
    418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 434, 435, 440, 444,
]


def test_ram_promptir_official_30_percent_set_unfreezes_the_published_share(tmp_path):
    model = _meta_model("promptir-ram")
    layers = enumerate_layers(model)
    chosen = [layers[i] for i in PROMPTIR_SELECTED_30]
    assert len(set(chosen)) == 133 and 344 not in PROMPTIR_SELECTED_30
    stages = {}
    for name in chosen:
        stages[name.split(".")[0]] = stages.get(name.split(".")[0], 0) + 1
    assert {k: v for k, v in stages.items() if v > 1} == {
        "decoder_level1": 30, "encoder_level1": 24, "refinement": 21, "decoder_level2": 15, "encoder_level2": 12,
        "decoder_level3": 10, "noise_level1": 5, "noise_level2": 2}
    assert "prompt1.linear_layer" in chosen and not any(s in stages for s in ("latent", "encoder_level3", "prompt2"))
    rest = [n for n in layers if n not in set(chosen)]
    (tmp_path / "filter_name.txt").write_text("\n".join(chosen + rest) + "\n")
    report = apply_ranking(model, tmp_path, 0.3)
    assert (report.trainable_layers, report.trainable_params) == (133, 3_938_755)
    assert f"{100 * report.param_share:.1f}" == "11.1"
