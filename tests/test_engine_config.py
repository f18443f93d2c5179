import pytest

from anyrestore.engine.config import apply_overrides, deep_merge, load_config, save_resolved
from anyrestore.errors import ConfigError
from engine_fixtures import write_recipe

MINIMAL = {
    "name": "x",
    "model": {"name": "nafnet-tiny"},
    "objective": {"type": "l1"},
    "data": {"streams": [{"type": "synthetic", "source": {"type": "dead_leaves", "size": 32}, "length": 8}]},
    "train": {"iterations": 5},
}


def test_base_includes_deep_merge_and_overrides(tmp_path):
    (tmp_path / "base").mkdir()
    write_recipe(tmp_path / "base" / "optim.yaml", {"optim": {"lr": "1e-4", "betas": [0.8, 0.9]}, "seed": 5})
    write_recipe(tmp_path / "base" / "more.yaml", {"optim": {"weight_decay": 0.1}, "train": {"iterations": 1}})
    tree = dict(MINIMAL, base=["base/optim.yaml", "base/more.yaml"], optim={"type": "adamw"})
    recipe = write_recipe(tmp_path / "r.yaml", tree)
    cfg = load_config(recipe, ["train.ema_decay=0.99", "data.streams.0.weight=2.5", "optim.betas=[0.9, 0.95]"])
    assert cfg.optim.type == "adamw" and cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.1  # merged from 3 files
    assert cfg.seed == 5 and cfg.train.iterations == 5  # the recipe wins over its bases
    assert cfg.train.ema_decay == 0.99 and cfg.data.streams[0].weight == 2.5 and cfg.optim.betas == [0.9, 0.95]
    assert cfg.data.batch_size == 8  # default from the dataclass


def test_all_problems_reported_in_one_line_with_file_and_keys(tmp_path):
    tree = dict(MINIMAL, optim={"lrr": 1.0, "betas": "x"}, train={"iterations": "many"})
    del tree["model"]
    recipe = write_recipe(tmp_path / "bad.yaml", tree)
    with pytest.raises(ConfigError) as info:
        load_config(recipe)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(recipe))
    for part in ("model: missing required key", "optim.lrr: unknown key (did you mean 'lr'?)",
                 "optim.betas: expected a list", "train.iterations: expected an integer"):
        assert part in message


def test_semantic_and_objective_errors(tmp_path):
    tree = dict(MINIMAL, objective={"type": "l3"}, train={"iterations": 0, "ema_decay": 1.5})
    tree["data"] = {"streams": [{"type": "paired", "lq": "a"}]}
    with pytest.raises(ConfigError) as info:
        load_config(write_recipe(tmp_path / "r.yaml", tree))
    message = str(info.value)
    assert "unknown objective 'l3' (did you mean l1?)" in message
    assert "train.iterations: must be > 0" in message and "train.ema_decay: must be in (0, 1)" in message
    assert "data.streams.0: paired streams need both 'lq' and 'gt'" in message


def test_bad_overrides_and_files(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", MINIMAL)
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(recipe, ["train.iterations"])
    with pytest.raises(ConfigError, match="train.iterationz: unknown key"):
        load_config(recipe, ["train.iterationz=3"])
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "broken.yaml")
    write_recipe(tmp_path / "loop.yaml", dict(MINIMAL, base="loop.yaml"))
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "loop.yaml")


def test_merge_and_override_helpers():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}
    assert apply_overrides({"a": [{"x": 1}]}, ["a.0.x=null", "b.c=text"]) == {"a": [{"x": None}], "b": {"c": "text"}}


def test_resolved_config_roundtrips(tmp_path):
    cfg = load_config(write_recipe(tmp_path / "r.yaml", MINIMAL))
    save_resolved(cfg, tmp_path / "resolved.yaml", header="# anyrestore train resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


@pytest.mark.parametrize("recipe", ["configs/tiny/smoke.yaml", "configs/tiny/default-model-cpu.yaml"])
def test_shipped_recipes_load_and_start_with_launch_command(recipe):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / recipe
    assert path.read_text().splitlines()[0].startswith("# anyrestore train ")
    assert load_config(path).train.iterations > 0
