import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anyrestore.engine.config import config_from_dict
from anyrestore.engine.objectives import OBJECTIVES, build_objective, register_objective
from anyrestore.engine.trainer import Trainer
from anyrestore.errors import ConfigError
from engine_fixtures import paired_recipe, write_recipe

REPO = Path(__file__).resolve().parents[1]


def losses(history):
    return [h["loss"] for h in history if "loss" in h]


def test_tiny_run_loss_decreases_and_writes_outputs(tmp_path):
    cfg = config_from_dict(paired_recipe(tmp_path, iterations=24, ema_decay=0.9, ckpt_every=12))
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    history = trainer.fit()
    values = losses(history)
    assert len(values) == 24
    assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "log.csv").is_file() and (run / "model.safetensors").is_file()
    rows = _csv_rows(run / "log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 25))
    assert [float(r["train/loss"]) for r in rows] == pytest.approx(values, rel=1e-6)
    pointer = json.loads((run / "ckpt" / "latest.json").read_text())
    assert pointer["iteration"] == 24
    tensors = load_file(run / "ckpt" / "iter_24.safetensors")
    assert any(k.startswith("params.") for k in tensors) and any(k.startswith("params_ema.") for k in tensors)
    # the exported model is the EMA copy and loads back through the public loader
    from anyrestore.checkpoints import load_model

    model = load_model(run / "model.safetensors")
    ema = trainer.ema.module.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ema[key])
    # lr followed the cosine rule with warm-up
    lrs = [h["lr"] for h in history if "lr" in h]
    assert lrs[0] == pytest.approx(2e-3 * 1 / 2)
    assert lrs[-1] < lrs[5]


def _csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_resume_after_interruption_gives_identical_losses(tmp_path):
    tree = paired_recipe(tmp_path, iterations=10, ckpt_every=4, ema_decay=0.5)
    full = Trainer(config_from_dict(tree), run_dir=tmp_path / "full").fit()
    Trainer(config_from_dict(tree), run_dir=tmp_path / "cut").fit(stop_at=6)  # killed after 6, checkpoint at 4
    resumed = Trainer(config_from_dict(tree), run_dir=tmp_path / "cut", resume=True).fit()
    assert resumed[0]["iteration"] == 5
    assert losses(resumed) == losses(full)[4:]
    # the CSV log drops the rows after the checkpoint (5, 6) and is rewritten by the resumed run: no duplicates
    rows = _csv_rows(tmp_path / "cut" / "log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))
    assert [float(r["train/loss"]) for r in rows] == pytest.approx(losses(full), rel=1e-6)
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_or_with_damaged_checkpoint_is_a_clear_error(tmp_path):
    from anyrestore.engine.checkpointing import ResumeError

    with pytest.raises(ResumeError, match="no checkpoint"):
        Trainer(config_from_dict(paired_recipe(tmp_path)), run_dir=tmp_path / "none", resume=True).fit()
    tree = paired_recipe(tmp_path, iterations=2, ckpt_every=1)
    Trainer(config_from_dict(tree), run_dir=tmp_path / "bad").fit()
    weights = tmp_path / "bad" / "ckpt" / "iter_2.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # damaged after the fact (disk, copy): a clear error, no traceback
    with pytest.raises(ResumeError, match="iter_2.safetensors: unreadable checkpoint weights"):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "bad", resume=True).fit()
    state = tmp_path / "bad" / "ckpt" / "iter_2.state.pt"
    latest = tmp_path / "bad" / "ckpt" / "latest.json"
    latest.write_text(latest.read_text().replace("iter_2.safetensors", "iter_1.safetensors"))
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(ResumeError, match="iter_2.state.pt: unreadable training state"):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "bad", resume=True).fit()


class _FreezeFirst:
    """Test objective: freezes every parameter of the model's first child in prepare()."""

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale
        self.prepared = 0

    def prepare(self, model):
        self.prepared += 1
        next(model.children()).requires_grad_(False)

    def __call__(self, model, batch):
        out = model(batch["lq"])
        assert isinstance(batch["generator"], torch.Generator) and batch["iteration"] >= 1
        loss = (out - batch["gt"]).abs().mean() * self.scale
        return {"loss": loss, "extra": loss.detach() * 2}


def test_objective_plugs_in_by_name_and_frozen_params_stay_out_of_optimizer(tmp_path):
    if "test-freeze-first" not in OBJECTIVES:
        register_objective("test-freeze-first")(_FreezeFirst)
    tree = paired_recipe(tmp_path, iterations=3)
    tree["objective"] = {"type": "test-freeze-first", "scale": 2.0}
    trainer = Trainer(config_from_dict(tree), run_dir=tmp_path / "run")
    trainer.setup()
    first = next(trainer.model.children())
    frozen_before = {k: v.clone() for k, v in first.state_dict().items()}
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert trainer.objective.prepared == 1
    assert not any(id(p) in in_optimizer for p in first.parameters())
    history = trainer.fit()
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in frozen_before.items())
    row = history[-1]
    assert row["extra"] == pytest.approx(2 * row["loss"])
    with pytest.raises(ConfigError, match="objective.scal: unknown key"):
        build_objective({"type": "test-freeze-first", "scal": 1})


def test_unsupported_combination_refused_before_work(tmp_path):
    tree = paired_recipe(tmp_path)
    tree["train"]["amp"] = "fp16"
    tree["train"]["device"] = "cpu"
    with pytest.raises(ConfigError, match="train.amp"):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "run")
    tree = paired_recipe(tmp_path)
    tree["model"]["kwargs"] = {"widht": 8}
    with pytest.raises(ConfigError, match="model.kwargs .* rejected by nafnet-tiny: .*widht"):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "run").setup()


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}:{REPO / 'tests'}")
    env.pop("ANYRESTORE_CKPT_WRITE_DELAY", None)
    return env


def test_sigkill_during_checkpoint_write_keeps_latest_valid_and_resume_works(tmp_path):
    tree = paired_recipe(tmp_path, iterations=6, ckpt_every=2)
    recipe = write_recipe(tmp_path / "recipe.yaml", tree)
    run = tmp_path / "runs" / "tiny-test"
    env = _env()
    env["ANYRESTORE_CKPT_WRITE_DELAY"] = "2"  # pause between the weights and the state of every checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "anyrestore", "train", str(recipe)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (run / "ckpt" / "iter_4.safetensors").exists():
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)  # checkpoint 4: weights written, state not yet
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run / "ckpt" / "iter_4.state.pt").exists()
    assert json.loads((run / "ckpt" / "latest.json").read_text())["iteration"] == 2
    env["ANYRESTORE_CKPT_WRITE_DELAY"] = "0"
    again = subprocess.run([sys.executable, "-m", "anyrestore", "train", str(recipe), "--resume"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "ckpt" / "latest.json").read_text())["iteration"] == 6
    reference = Trainer(config_from_dict(tree), run_dir=tmp_path / "reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): bit-equal sums need the same split
    try:
        reference.fit()
    finally:
        torch.set_num_threads(threads)
    resumed = load_file(run / "model.safetensors")
    assert all(torch.equal(v, resumed[k]) for k, v in reference.model.state_dict().items())


def test_smoke_recipe_on_dead_leaves_with_synthetic_degradations(tmp_path):
    from anyrestore.engine.config import load_config

    cfg = load_config(REPO / "configs" / "tiny" / "smoke.yaml", [
        "train.iterations=20", "train.progress=false", "train.tensorboard=false", "train.log_every=1",
        "data.streams.0.degradation=noise:25", "data.streams.0.source.size=36", "data.crop=32",
        "val.every=20", "val.count=2", "val.crop=32",
        "optim.lr=0.002", f"output_dir={tmp_path}"])
    history = Trainer(cfg).fit()
    values = losses(history)
    assert len(values) == 20
    assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4
    val = [h for h in history if "val/psnr" in h]
    assert len(val) == 1 and val[0]["val/count"] == 2 and 10 < val[0]["val/psnr"] < 60
    assert (tmp_path / "tiny-smoke" / "model.safetensors").is_file()


def test_validation_on_a_protocol_uses_the_test_code(tmp_path):
    import warnings

    from anyrestore.data.datasets import DatasetLayoutError
    from engine_fixtures import smooth_image, write_png

    tree = paired_recipe(tmp_path, iterations=2)
    tree["val"] = {"every": 2, "protocol": "promptir-3task", "root": str(tmp_path / "bench")}
    with pytest.raises(DatasetLayoutError, match="val.protocol promptir-3task: benchmark sots-outdoor: not found"):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "run").setup()
    import numpy as np

    rng = np.random.default_rng(0)
    bench = tmp_path / "bench"
    write_png(bench / "SOTS/outdoor/hazy/0001_0.8_0.2.jpg", smooth_image(rng, 32, 32))
    write_png(bench / "SOTS/outdoor/gt/0001.png", smooth_image(rng, 32, 32))
    write_png(bench / "Rain100L/input/a.png", smooth_image(rng, 32, 32))
    write_png(bench / "Rain100L/target/a.png", smooth_image(rng, 32, 32))
    write_png(bench / "CBSD68/original_png/a.png", smooth_image(rng, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = Trainer(config_from_dict(tree)).fit()  # default run folder: <output_dir>/<name>
    val = [h for h in history if "val/psnr" in h]
    assert len(val) == 1 and 5 < val[0]["val/psnr"] < 60
    # `anyrestore test RECIPE` takes the recipe's protocol, root and trained weights: same numbers (no EMA here)
    from anyrestore.cli import main

    recipe = write_recipe(tmp_path / "recipe.yaml", tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["test", str(recipe), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "promptir-3task.json").read_text())[0]
    assert report["average"]["psnr"] == pytest.approx(val[0]["val/psnr"], rel=1e-6)
    assert report["average"]["ssim"] == pytest.approx(val[0]["val/ssim"], rel=1e-6)


def test_gradient_accumulation_matches_the_larger_batch_and_pruning_keeps_last(tmp_path):
    big = paired_recipe(tmp_path, iterations=3)
    accum = paired_recipe(tmp_path, iterations=3, grad_accum=2, ckpt_every=1, keep_checkpoints=2)
    accum["data"]["batch_size"] = 2
    a = Trainer(config_from_dict(big), run_dir=tmp_path / "big")
    b = Trainer(config_from_dict(accum), run_dir=tmp_path / "accum")
    assert losses(b.fit()) == pytest.approx(losses(a.fit()), rel=1e-4)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[key], value, rtol=1e-3, atol=1e-5)
    kept = sorted(p.name for p in (tmp_path / "accum" / "ckpt").glob("iter_*"))
    assert kept == ["iter_2.safetensors", "iter_2.state.pt", "iter_3.safetensors", "iter_3.state.pt"]


def _grad_norm(trainer):
    grads = [p.grad for g in trainer.optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads])))


def test_gradient_clipping_bounds_the_global_norm_and_logs_the_raw_norm(tmp_path):
    tree = paired_recipe(tmp_path, iterations=1)
    free = Trainer(config_from_dict(tree), run_dir=tmp_path / "free")
    assert "grad_norm" not in free.fit()[-1]
    raw = _grad_norm(free)  # gradients of the last (only) step stay on the parameters
    tree["optim"]["grad_clip"] = 1e-9
    clipped = Trainer(config_from_dict(tree), run_dir=tmp_path / "clip")
    row = clipped.fit()[-1]
    assert raw > 1e-2 and row["grad_norm"] == pytest.approx(raw, rel=1e-5)
    assert _grad_norm(clipped) == pytest.approx(1e-9, rel=1e-4)
    # the optimiser stepped with the clipped gradients: elements ~1e-12 << Adam's eps (1e-8) barely move the weights
    init = Trainer(config_from_dict(tree), run_dir=tmp_path / "init")
    init.setup()
    start = [p.detach() for p in init.model.parameters()]
    free_move = max(float((a.detach() - s).abs().max()) for a, s in zip(free.model.parameters(), start))
    clip_move = max(float((a.detach() - s).abs().max()) for a, s in zip(clipped.model.parameters(), start))
    assert free_move > 1e-4 and clip_move < 0.1 * free_move


def test_pretrained_weights_are_loaded_before_training(tmp_path):
    first = Trainer(config_from_dict(paired_recipe(tmp_path, iterations=2)), run_dir=tmp_path / "a")
    first.fit()
    tree = paired_recipe(tmp_path, iterations=2)
    tree["model"]["pretrained"] = str(tmp_path / "a" / "model.safetensors")
    second = Trainer(config_from_dict(tree), run_dir=tmp_path / "b")
    second.setup()
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value)
    tree["model"]["kwargs"] = {"width": 16}
    from anyrestore.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError):
        Trainer(config_from_dict(tree), run_dir=tmp_path / "c").setup()


def test_channels_last_training_matches_the_default_layout_and_resumes(tmp_path):
    tree = paired_recipe(tmp_path, iterations=8, ckpt_every=4, ema_decay=0.5)
    plain = Trainer(config_from_dict(tree), run_dir=tmp_path / "plain").fit()
    tree["train"]["channels_last"] = True
    trainer = Trainer(config_from_dict(tree), run_dir=tmp_path / "cl")
    fast = trainer.fit()
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert losses(fast) == pytest.approx(losses(plain), rel=1e-4, abs=1e-6)
    a = load_file(tmp_path / "plain" / "model.safetensors")
    b = load_file(tmp_path / "cl" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    # interrupted and resumed in channels-last: same losses as the uninterrupted channels-last run
    Trainer(config_from_dict(tree), run_dir=tmp_path / "cut").fit(stop_at=5)
    resumed = Trainer(config_from_dict(tree), run_dir=tmp_path / "cut", resume=True).fit()
    assert losses(resumed) == pytest.approx(losses(fast)[4:], rel=1e-5, abs=1e-7)
