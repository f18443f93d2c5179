"""Training checkpoints (conventions.md §1.3), written so that a crash never leaves a corrupt "latest".

Layout of ``<run>/ckpt/``:

* ``iter_<n>.safetensors``: weights, keys prefixed ``params.`` (and ``params_ema.`` when EMA is on), metadata
  ``weight_sets``;
* ``iter_<n>.state.pt``: optimiser, scaler, RNG states, counters, objective state — only tensors, numbers,
  strings, lists and dicts, so ``torch.load(weights_only=True)`` reads it;
* ``latest.json``: ``{"iteration": n, "weights": ..., "state": ...}``.

Every file is written to a temporary name, flushed, fsynced and moved into place with ``os.replace``; the pointer
is replaced last, so at any instant it names a complete pair. ``ANYRESTORE_CKPT_WRITE_DELAY`` (seconds) pauses
between writing the weights and the state — used by tests to kill a run mid-write.
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load

from anyrestore.errors import AnyRestoreError


class ResumeError(AnyRestoreError):
    """A run cannot be resumed (no checkpoint, unreadable or inconsistent checkpoint)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_training_checkpoint(run_dir: str | os.PathLike, iteration: int, *, model: Any, params: dict[str, torch.Tensor],
                             ema: dict[str, torch.Tensor] | None, state: dict[str, Any],
                             metadata: dict[str, str] | None = None, keep: int = 0) -> Path:
    """Write ``iter_<n>`` weights + state, then move ``latest.json`` to it; returns the weights path."""
    ckpt = Path(run_dir) / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    weights = ckpt / f"iter_{iteration}.safetensors"
    state_path = ckpt / f"iter_{iteration}.state.pt"
    from anyrestore.checkpoints import save_training_weights

    save_training_weights(weights, params=params, params_ema=ema, model=model if hasattr(model, "arch_name") else None, iteration=str(iteration), **(metadata or {}))
    delay = float(os.environ.get("ANYRESTORE_CKPT_WRITE_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(state_path, buffer.getvalue())
    pointer = {"iteration": iteration, "weights": weights.name, "state": state_path.name}
    atomic_write_bytes(ckpt / "latest.json", json.dumps(pointer).encode("utf-8"))
    if keep > 0:
        _prune(ckpt, keep)
    return weights


def _prune(ckpt: Path, keep: int) -> None:
    found = sorted((int(p.name[5:-12]), p) for p in ckpt.glob("iter_*.safetensors") if p.name[5:-12].isdigit())
    for n, path in found[:-keep]:
        path.unlink(missing_ok=True)
        (ckpt / f"iter_{n}.state.pt").unlink(missing_ok=True)


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(weights, state)`` named by ``latest.json``, or ``None`` when the run has no checkpoint yet."""
    ckpt = Path(run_dir) / "ckpt"
    pointer = ckpt / "latest.json"
    if not pointer.is_file():
        return None
    try:
        data = json.loads(pointer.read_text(encoding="utf-8"))
        return ckpt / data["weights"], ckpt / data["state"]
    except (ValueError, KeyError) as exc:
        raise ResumeError(f"{pointer}: unreadable checkpoint pointer ({exc})") from exc


def load_training_checkpoint(weights: Path, state: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Read a checkpoint pair safely: ``(params, params_ema or None, state)``."""
    for path in (weights, state):
        if not path.is_file():
            raise ResumeError(f"checkpoint file missing: {path}")
    try:
        tensors = st_load(weights.read_bytes())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for truncated/corrupt files
        raise ResumeError(f"{weights}: unreadable checkpoint weights ({type(exc).__name__}: {exc})") from exc
    params = {k[len("params."):]: v for k, v in tensors.items() if k.startswith("params.")}
    ema = {k[len("params_ema."):]: v for k, v in tensors.items() if k.startswith("params_ema.")} or None
    try:
        train_state = torch.load(state, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is not a state we wrote
        raise ResumeError(f"{state}: unreadable training state ({type(exc).__name__}: {exc})") from exc
    return params, ema, train_state


# ----------------------------------------------------------------------------------------------- RNG state


def capture_rng(device: torch.device) -> dict[str, Any]:
    import random

    import numpy as np

    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype("uint32"), npst["pos"], npst["has_gauss"], npst["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
