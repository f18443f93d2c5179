"""Shared helpers of the engine/data tests: tiny image trees and tiny recipes (no test functions here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(array[..., ::-1]))


def smooth_image(rng: np.random.Generator, h: int = 48, w: int = 48) -> np.ndarray:
    """A smooth uint8 RGB image (bilinear upsampling of a coarse random grid)."""
    import cv2

    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR), 0, 255).astype(np.uint8)


def make_paired_tree(root: Path, count: int = 6, sigma: float = 20.0, seed: int = 0) -> tuple[Path, Path]:
    """``root/lq`` (noisy) and ``root/gt`` (clean) with identical names."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        gt = smooth_image(rng)
        lq = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).astype(np.uint8)
        write_png(root / "gt" / f"{i:03d}.png", gt)
        write_png(root / "lq" / f"{i:03d}.png", lq)
    return root / "lq", root / "gt"


def paired_recipe(tmp: Path, *, iterations: int = 12, **train: object) -> dict:
    lq, gt = make_paired_tree(tmp / "data")
    return {
        "name": "tiny-test",
        "seed": 3,
        "output_dir": str(tmp / "runs"),
        "data_root": str(tmp / "data"),
        "model": {"name": "nafnet-tiny"},
        "objective": {"type": "l1"},
        "data": {"streams": [{"type": "paired", "lq": "lq", "gt": "gt", "pairing": "name"}],
                 "batch_size": 4, "crop": 32, "epoch_length": 16, "augment": "flip_rot"},
        "optim": {"lr": 2e-3},
        "schedule": {"type": "cosine", "warmup": 2, "eta_min": 1e-4},
        "train": {"iterations": iterations, "log_every": 1, "progress": False, "tensorboard": False, **train},
    }


def write_recipe(path: Path, tree: dict, header: str = "# anyrestore train recipe.yaml") -> Path:
    path.write_text(header + "\n" + yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


class FreezeFirstChild:
    """Test objective: L1, and ``prepare`` freezes the model's first child (like RAM's selective fine-tuning)."""

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale

    def prepare(self, model):
        next(model.children()).requires_grad_(False)

    def __call__(self, model, batch):
        return {"loss": (model(batch["lq"]) - batch["gt"]).abs().mean() * self.scale}


def register_test_objectives() -> None:
    from anyrestore.engine.objectives import OBJECTIVES, register_objective

    if "test-freeze-first-child" not in OBJECTIVES:
        register_objective("test-freeze-first-child")(FreezeFirstChild)
