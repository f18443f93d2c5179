"""DDP on CPU (gloo) through torchrun: same losses as one process with the same global batch, identical ranks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from anyrestore.engine.config import config_from_dict
from anyrestore.engine.trainer import Trainer
from engine_fixtures import paired_recipe, register_test_objectives, write_recipe

REPO = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys
from safetensors.torch import save_file
from engine_fixtures import register_test_objectives
register_test_objectives()
from anyrestore.engine.config import load_config
from anyrestore.engine.distributed import cleanup
from anyrestore.engine.trainer import Trainer

trainer = Trainer(load_config(sys.argv[1]), run_dir=sys.argv[2])
history = trainer.fit()
rank = trainer.dist.rank
save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{sys.argv[2]}/rank{rank}.safetensors")
with open(f"{sys.argv[2]}/history{rank}.json", "w") as f:
    json.dump([h for h in history if "loss" in h], f)
cleanup(trainer.dist)
"""


def test_torchrun_two_processes_match_single_process(tmp_path):
    register_test_objectives()
    tree = paired_recipe(tmp_path, iterations=4)
    tree["data"]["batch_size"] = 2  # per process: global batch 4
    tree["objective"] = {"type": "test-freeze-first-child"}  # frozen params: find_unused_parameters defaults to true
    recipe = write_recipe(tmp_path / "recipe.yaml", tree)
    (tmp_path / "worker.py").write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
    run = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(tmp_path / "worker.py"), str(recipe), str(run)],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = load_file(run / "rank0.safetensors"), load_file(run / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    ddp_losses = [h["loss"] for h in json.loads((run / "history0.json").read_text())]

    tree["data"]["batch_size"] = 4
    single = Trainer(config_from_dict(tree), run_dir=tmp_path / "single")
    single_losses = [h["loss"] for h in single.fit() if "loss" in h]
    assert len(ddp_losses) == len(single_losses) == 4
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4, abs=1e-6)
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-3, atol=1e-5)
    first = next(single.model.named_children())[0]
    assert any(k.startswith(first + ".") for k in rank0)
    initial = Trainer(config_from_dict(tree), run_dir=tmp_path / "init")
    initial.setup()
    for key, value in initial.model.state_dict().items():  # the frozen child did not move on either path
        if key.startswith(first + "."):
            assert torch.equal(rank0[key], value)
