"""The training loop: one objective, one model, one state mapping.

``Trainer(config, run_dir=...).fit()`` builds the model (registry name + overrides, optional pretrained weights),
lets the objective ``prepare`` it (freeze layers / wrap it), builds Adam/AdamW over the parameters that still
require gradients, and iterates: ``batch -> objective(model, batch)["loss"] -> backward -> clip -> step -> EMA``.
``iteration`` counts optimiser steps (1-based while computing). Checkpoints and logs are written by rank 0 only;
data, RNG and objective randomness depend on (seed, rank, iteration) only, so ``resume=True`` continues a run
bit-for-bit on CPU.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from anyrestore.engine import checkpointing as ckpt_io
from anyrestore.engine.config import RunConfig, save_resolved
from anyrestore.engine.distributed import DistInfo, average_scalars, barrier, init_distributed
from anyrestore.engine.ema import ModelEMA
from anyrestore.engine.objectives import build_objective
from anyrestore.engine.schedules import lr_at
from anyrestore.errors import ConfigError

STATE_KEYS = {"iteration", "epoch", "position", "optimizer", "scaler", "rng", "objective", "run_name", "world_size"}


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device("cuda", dist.local_rank)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Trainer:
    """Train ``config`` into ``run_dir``.

    Args:
        config: the validated recipe.
        run_dir: output folder (default ``<output_dir>/<name>``).
        resume: continue from ``<run_dir>/ckpt/latest.json``.
        dist: process-group info (default: joined from the torchrun environment).

    Raises:
        ConfigError: unsupported combinations (fp16 on CPU, nothing to train...), before any work is done.
    """

    def __init__(self, config: RunConfig, *, run_dir: str | os.PathLike | None = None, resume: bool = False,
                 dist: DistInfo | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else Path(config.output_dir) / config.name
        device_type = "cuda" if config.train.device == "cuda" or (config.train.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = dist if dist is not None else init_distributed(config.distributed.backend, device_type)
        self.device = resolve_device(config.train.device, self.dist)
        if config.train.amp != "none" and self.device.type != "cuda":
            raise ConfigError(f"train.amp: {config.train.amp} needs a CUDA device (training on {self.device})")
        self.resume = resume
        self.iteration = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------------------- setup

    def _build_model(self) -> nn.Module:
        from anyrestore.archs.registry import build_model

        cfg = self.config.model
        try:
            model = build_model(cfg.name, **cfg.kwargs)
        except TypeError as exc:  # a keyword the architecture does not take, or a value of the wrong kind
            if not cfg.kwargs:
                raise
            raise ConfigError(f"model.kwargs {cfg.kwargs} rejected by {cfg.name}: {exc}") from exc
        if cfg.pretrained:
            load_pretrained(model, cfg.pretrained, param_key=cfg.param_key, strict=cfg.strict)
        prepare = getattr(self.objective, "prepare", None)
        if prepare is not None:
            replaced = prepare(model)
            if replaced is not None:
                model = replaced
        return model

    def setup(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.objective = build_objective(cfg.objective)
        if isinstance(self.objective, nn.Module):  # buffers only: learnable parts belong in the model (prepare)
            self.objective.to(self.device)
        self.model = self._build_model().to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("nothing to train: every parameter is frozen after objective.prepare")
        self.frozen = sum(1 for p in self.model.parameters() if not p.requires_grad)
        opt = cfg.optim
        optim_cls = torch.optim.Adam if opt.type == "adam" else torch.optim.AdamW
        self.optimizer = optim_cls(trainable, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
        self.ema = ModelEMA(self.model, decay=cfg.train.ema_decay) if cfg.train.ema_decay else None
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp == "fp16")
        self.ddp_model = self.model
        if self.dist.enabled:
            find_unused = cfg.distributed.find_unused_parameters
            if find_unused is None:
                find_unused = self.frozen > 0
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused, static_graph=cfg.distributed.static_graph)
        from anyrestore.engine.builders import build_train_data

        self.dataset, self.sampler, self.loader_kwargs = build_train_data(cfg, self.dist)
        self.batches_per_epoch = self.sampler.per_rank() // cfg.data.batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"data: an epoch has {len(self.dataset)} samples, fewer than one batch per process "
                f"({cfg.data.batch_size} × {self.dist.world_size}); raise data.epoch_length")
        if cfg.val.every > 0 and cfg.val.protocol is not None:
            from anyrestore.data.benchmarks import check_protocol
            from anyrestore.data.datasets import DatasetLayoutError

            _, missing = check_protocol(cfg.val.protocol, cfg.val.root or cfg.data_root)
            if missing:  # refuse now rather than at the first validation, hours into the run
                raise DatasetLayoutError(f"val.protocol {cfg.val.protocol}: " + "; ".join(missing))
        if self.resume:
            self._load_latest()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_resolved(cfg, self.run_dir / "config.yaml",
                          header=f"# resolved recipe of run {cfg.name!r}; relaunch: anyrestore train {self.run_dir / 'config.yaml'}")
        barrier(self.dist)

    # ------------------------------------------------------------------------------------------- data

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Infinite batch stream starting right after the micro-batches already consumed."""
        from torch.utils.data import DataLoader

        from anyrestore.data.sampling import worker_seeder

        consumed = self.iteration * self.config.train.grad_accum
        epoch, position = divmod(consumed, self.batches_per_epoch)
        while True:
            self.dataset.set_epoch(epoch)
            self.sampler.set_epoch(epoch, start=position * self.config.data.batch_size)
            loader = DataLoader(self.dataset, sampler=self.sampler, drop_last=True,
                                worker_init_fn=worker_seeder(self.config.seed, epoch, self.dist.rank), **self.loader_kwargs)
            for batch in loader:
                yield batch
            epoch, position = epoch + 1, 0

    def _to_device(self, batch: dict[str, Any], iteration: int) -> dict[str, Any]:
        out = dict(batch)
        for key in ("lq", "gt", "class_index"):
            out[key] = batch[key].to(self.device, non_blocking=True)
            if self.config.train.channels_last and out[key].dim() == 4:
                out[key] = out[key].contiguous(memory_format=torch.channels_last)
        out["iteration"] = iteration
        gen = torch.Generator(device=self.device)
        from anyrestore.data.sampling import stable_hash

        gen.manual_seed(stable_hash("objective", self.config.seed, self.dist.rank, iteration))
        out["generator"] = gen
        return out

    # ------------------------------------------------------------------------------------------- loop

    def fit(self, *, stop_at: int | None = None) -> list[dict[str, float]]:
        """Run to ``train.iterations``; returns the logged rows (training rows averaged over ranks).

        ``stop_at`` ends the loop after that iteration without the final checkpoint/export, as an interruption would
        (the schedule still spans ``train.iterations``).
        """
        if not hasattr(self, "model"):
            self.setup()
        cfg = self.config
        total = cfg.train.iterations
        logger = None
        if self.dist.is_main:
            from anyrestore.engine.logging import RunLogger

            logger = RunLogger(self.run_dir, tensorboard=cfg.train.tensorboard, resume_from=self.iteration)
        progress = None
        if self.dist.is_main and cfg.train.progress:
            from tqdm import tqdm

            progress = tqdm(total=total, initial=self.iteration, desc=cfg.name, dynamic_ncols=True)
        batches = self._batches()
        window: dict[str, list[float]] = {}
        start_time = time.time()
        try:
            while self.iteration < min(total, stop_at if stop_at is not None else total):
                t = self.iteration + 1
                values = self._step(t, batches)
                self.iteration = t
                for key, value in values.items():
                    window.setdefault(key, []).append(value)
                if t % cfg.train.log_every == 0 or t == total:
                    means = {k: sum(v) / len(v) for k, v in window.items()}
                    means = average_scalars(means, self.dist, self.device)
                    means["lr"] = self.optimizer.param_groups[0]["lr"]
                    window = {}
                    self.history.append({"iteration": t, **means})
                    if logger is not None:
                        logger.log(t, means)
                    if progress is not None:
                        progress.set_postfix(loss=f"{means['loss']:.4g}", lr=f"{means['lr']:.2e}")
                if progress is not None:
                    progress.update(1)
                if cfg.val.every > 0 and t % cfg.val.every == 0:
                    self._validate(t, logger)
                if (cfg.train.ckpt_every > 0 and t % cfg.train.ckpt_every == 0) or t == total:
                    self.save_checkpoint()
        finally:
            if progress is not None:
                progress.close()
            if logger is not None:
                logger.close()
        if self.iteration < total:
            return self.history
        if self.dist.is_main:
            self.export(self.run_dir / "model.safetensors")
            elapsed = time.time() - start_time
            (self.run_dir / "done.txt").write_text(f"iterations {self.iteration}\nseconds {elapsed:.1f}\n", encoding="utf-8")
        barrier(self.dist)
        return self.history

    def _step(self, t: int, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        cfg = self.config
        # Global RNG (dropout, DropPath) reseeded per step: identical streams after a resume, on every rank.
        from anyrestore.data.sampling import stable_hash

        torch.manual_seed(stable_hash("global", cfg.seed, self.dist.rank, t))
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = lr_at(t, group["initial_lr"], cfg.schedule, cfg.train.iterations)
        self.optimizer.zero_grad(set_to_none=True)
        accum = cfg.train.grad_accum
        logged: dict[str, float] = {}
        for micro in range(accum):
            batch = self._to_device(next(batches), t)
            sync = micro == accum - 1 or not self.dist.enabled
            ctx = contextlib.nullcontext() if sync else self.ddp_model.no_sync()
            with ctx:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = self.objective(self.ddp_model, batch)
                if "loss" not in out:
                    raise ConfigError(f"objective {cfg.objective['type']!r} returned no 'loss' (keys: {sorted(out)})")
                loss = out["loss"]
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(f"iteration {t}: loss is {loss.item()} (objective {cfg.objective['type']!r})")
                self.scaler.scale(loss / accum).backward()
            for key, value in out.items():
                value = float(value.detach()) if torch.is_tensor(value) else float(value)
                logged[key] = logged.get(key, 0.0) + value / accum
        if cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                  cfg.optim.grad_clip)
            logged["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return logged

    # ------------------------------------------------------------------------------------------- validation

    def _validate(self, t: int, logger: Any) -> dict[str, float] | None:
        result = None
        if self.dist.is_main:
            from anyrestore.engine.evaluate import validate

            model = self.ema.module if self.ema is not None else self.model
            result = validate(model, self.config, device=self.device)
            if logger is not None:
                logger.log(t, result, prefix="val")
            self.history.append({"iteration": t, **{f"val/{k}": v for k, v in result.items()}})
            self.model.train()
        barrier(self.dist)
        return result

    # ------------------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        consumed = self.iteration * self.config.train.grad_accum
        epoch, position = divmod(consumed, self.batches_per_epoch)
        objective_state = self.objective.state_dict() if hasattr(self.objective, "state_dict") else {}
        return {
            "iteration": self.iteration, "epoch": epoch, "position": position,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": ckpt_io.capture_rng(self.device), "objective": objective_state,
            "run_name": self.config.name, "world_size": self.dist.world_size,
        }

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            ckpt_io.save_training_checkpoint(
                self.run_dir, self.iteration, model=self.model, params=self.model.state_dict(),
                ema=self.ema.state_dict() if self.ema is not None else None, state=self.state_dict(),
                metadata={"run": self.config.name, "model_name": self.config.model.name}, keep=self.config.train.keep_checkpoints)
        barrier(self.dist)

    def _load_latest(self) -> None:
        found = ckpt_io.latest_checkpoint(self.run_dir)
        if found is None:
            raise ckpt_io.ResumeError(f"--resume: no checkpoint in {self.run_dir / 'ckpt'}")
        params, ema, state = ckpt_io.load_training_checkpoint(*found)
        unknown = set(state) - STATE_KEYS
        if unknown:
            raise ckpt_io.ResumeError(f"{found[1]}: unknown state entries {sorted(unknown)}")
        if state["world_size"] != self.dist.world_size:
            raise ckpt_io.ResumeError(
                f"{found[1]}: saved with {state['world_size']} processes, resuming with {self.dist.world_size}")
        self.model.load_state_dict(params)
        if self.ema is not None:
            if ema is None:
                raise ckpt_io.ResumeError(f"{found[0]}: no params_ema, but train.ema_decay is set")
            self.ema.load_state_dict(ema)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if state["objective"]:
            if not hasattr(self.objective, "load_state_dict"):
                raise ckpt_io.ResumeError(f"{found[1]}: objective state present but the objective cannot load it")
            self.objective.load_state_dict(state["objective"])
        ckpt_io.restore_rng(state["rng"], self.device)
        self.iteration = int(state["iteration"])

    def export(self, path: Path) -> Path:
        """Write the trained weights (EMA when on) as a standard anyrestore model file."""
        model = self.ema.module if self.ema is not None else self.model
        from anyrestore.engine.builders import export_model

        return export_model(model, path, weights="ema" if self.ema is not None else "raw",
                            extra={"run": self.config.name, "iterations": str(self.iteration)})


def load_pretrained(model: nn.Module, path: str, *, param_key: str = "auto", strict: bool = True) -> None:
    """Load a weights file into ``model`` through :func:`anyrestore.checkpoints.load_model` (safe reading, family
    detection and renaming restricted to the model's architecture), then copy the weights over."""
    from anyrestore.checkpoints import load_into, load_model

    loaded = load_model(path, param_key=param_key, arch=getattr(model, "arch_name", None), strict=strict)
    load_into(model, loaded.state_dict(), strict=strict)
