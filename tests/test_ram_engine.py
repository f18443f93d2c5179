"""RAM objectives inside the training engine: freeze rule, masked pre-training, resume, DDP with frozen layers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anyrestore.archs.registry import build_model
from anyrestore.checkpoints import load_model, save_model
from anyrestore.engine.config import config_from_dict
from anyrestore.engine.trainer import Trainer
from anyrestore.methods.ram.finetune import Ranking, enumerate_layers, write_ranking
from engine_fixtures import paired_recipe, write_recipe

REPO = Path(__file__).resolve().parents[1]


def _finetune_recipe(tmp_path, iterations=2):
    torch.manual_seed(0)
    model = build_model("swinir-ram-tiny")
    pretrained = save_model(model, tmp_path / "pretrain.safetensors")
    names = enumerate_layers(model)
    ranking = Ranking(names=names[::-1])  # last layers first: conv_last, conv_after_body, norm, ...
    write_ranking(ranking, tmp_path / "ranking")
    tree = paired_recipe(tmp_path, iterations=iterations)
    tree["model"] = {"name": "swinir-ram-tiny", "pretrained": str(pretrained), "param_key": "params"}
    tree["objective"] = {"type": "ram_finetune", "ranking": str(tmp_path / "ranking"), "ratio": 0.3}
    selected = set(ranking.select(0.3))
    return tree, model.state_dict(), selected


def _check_only_selected_changed(final_sd, initial_sd, selected):
    changed = {k for k in initial_sd if not torch.equal(initial_sd[k], final_sd[k])}
    expected = {k for k in initial_sd if k.rpartition(".")[0] in selected and k.rpartition(".")[2] in
                ("weight", "bias", "relative_position_bias_table")}
    assert changed == expected


def test_trainer_updates_only_the_selected_layers(tmp_path):
    tree, initial, selected = _finetune_recipe(tmp_path)
    trainer = Trainer(config_from_dict(tree), run_dir=tmp_path / "run")
    trainer.setup()
    assert trainer.objective.report.trainable_layers == len(selected) == int(0.3 * len(enumerate_layers(trainer.model)))
    in_optimizer = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
    assert in_optimizer == trainer.objective.report.trainable_params
    trainer.fit()
    _check_only_selected_changed(trainer.model.state_dict(), initial, selected)


def _pretrain_tree(tmp_path, iterations):
    tree = paired_recipe(tmp_path, iterations=iterations)
    tree["model"] = {"name": "swinir-ram-tiny"}
    tree["objective"] = {"type": "ram_pretrain", "mask_ratio": 0.5}
    tree["train"]["ema_decay"] = 0.995
    tree["train"]["ckpt_every"] = 2
    return tree


def test_masked_pretraining_runs_and_resumes_exactly(tmp_path):
    straight = Trainer(config_from_dict(_pretrain_tree(tmp_path / "a", 4)), run_dir=tmp_path / "a" / "run")
    full = straight.fit()
    assert all(row["mask_fraction"] == 0.5 for row in full if "mask_fraction" in row)
    first = Trainer(config_from_dict(_pretrain_tree(tmp_path / "b", 4)), run_dir=tmp_path / "b" / "run")
    first.fit(stop_at=2)
    resumed = Trainer(config_from_dict(_pretrain_tree(tmp_path / "b", 4)), run_dir=tmp_path / "b" / "run",
                      resume=True)
    tail = resumed.fit()
    losses = [r["loss"] for r in full if "loss" in r]
    assert [r["loss"] for r in tail if "loss" in r][-2:] == losses[-2:]
    assert len(set(losses)) == len(losses)  # a fresh mask (and batch) every iteration


@pytest.mark.slow
def test_ddp_with_frozen_layers(tmp_path):
    """Two gloo processes through torchrun: frozen parameters get no gradient, DDP must not hang or fail."""
    tree, initial, selected = _finetune_recipe(tmp_path, iterations=3)
    tree["train"]["device"] = "cpu"
    recipe = write_recipe(tmp_path / "ft.yaml", tree)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "anyrestore", "train", str(recipe), "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_model(tmp_path / "run" / "model.safetensors")
    _check_only_selected_changed(model.state_dict(), initial, selected)
