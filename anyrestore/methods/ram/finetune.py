"""RAM stage 3: layer enumeration, ranking files and selective fine-tuning (ram.md §5.1, §5.6, §6).

A *layer* is a module that directly owns at least one parameter, named by its dotted module path. Fine-tuning
unfreezes parameter ``p`` iff the path of its owning module (parameter name minus its last component) is exactly
one of the first ``floor(N_L · ratio)`` names of a ranking; every other parameter gets ``requires_grad=False``
and is left out of the optimiser.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyrestore.archs.registry import model_meta
from anyrestore.engine.objectives import register_objective
from anyrestore.errors import ConfigError
from anyrestore.methods.ram.pretrain import current_rank, unwrap

RANKING_FILES = ("filter_name.txt", "filter_index.txt", "filter_cond.txt")


def owner_of(param_name: str) -> str:
    """Dotted path of the module owning ``param_name`` ('' for a top-level parameter)."""
    return param_name.rpartition(".")[0]


def enumerate_layers(model: nn.Module) -> list[str]:
    """Layer names in enumeration order (ram.md §5.1); the list position is the layer index.

    Walks ``named_parameters()`` in PyTorch order, maps each parameter to its owning module, skips top-level
    parameters and appends an owner whenever it differs from the previously appended one. A ``module.`` prefix
    (DDP) is stripped.
    """
    names: list[str] = []
    for name, _ in unwrap(model).named_parameters():
        owner = owner_of(name)
        if owner and (not names or names[-1] != owner):
            names.append(owner)
    return names


def layer_param_counts(model: nn.Module) -> dict[str, int]:
    """Number of parameters each layer owns directly."""
    counts: dict[str, int] = {}
    for name, p in unwrap(model).named_parameters():
        owner = owner_of(name)
        if owner:
            counts[owner] = counts.get(owner, 0) + p.numel()
    return counts


def num_selected(num_layers: int, ratio: float) -> int:
    """``int(num_layers · ratio)``: SwinIR 263·0.1 → 26, PromptIR 445·0.3 → 133."""
    if not 0.0 < float(ratio) <= 1.0:
        raise ConfigError(f"fine-tune ratio must be in (0, 1], got {ratio}")
    return int(num_layers * float(ratio))


@dataclass
class Ranking:
    """Layer names in rank order with their enumeration indices and scores (scores may be absent)."""

    names: list[str]
    indices: list[int] | None = None
    scores: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def select(self, ratio: float) -> list[str]:
        """The first ``int(N_L · ratio)`` names, in file order (never re-sorted)."""
        return self.names[: num_selected(len(self.names), ratio)]


def read_ranking(directory: str | Path) -> Ranking:
    """Read a ranking directory in the official format (``filter_name.txt`` required, the others optional).

    ``ranking.json`` (written by anyrestore) is read for its metadata when present. The file order is the rank
    order; nothing is re-sorted.
    """
    directory = Path(directory)
    name_file = directory / "filter_name.txt"
    if not name_file.is_file():
        raise ConfigError(f"ranking directory {directory} has no filter_name.txt")
    names = [line.strip() for line in name_file.read_text().splitlines() if line.strip()]
    if not names:
        raise ConfigError(f"{name_file} is empty")
    if len(set(names)) != len(names):
        raise ConfigError(f"{name_file} lists a layer name more than once")
    ranking = Ranking(names=names)
    for attr, fname, cast in (("indices", "filter_index.txt", int), ("scores", "filter_cond.txt", float)):
        path = directory / fname
        if not path.is_file():
            continue
        try:
            values = [cast(line) for line in path.read_text().split()]
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if len(values) != len(names):
            raise ConfigError(f"{path} has {len(values)} lines, filter_name.txt has {len(names)}")
        setattr(ranking, attr, values)
    info_path = directory / "ranking.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        ranking.info = {k: v for k, v in info.items() if k not in ("ranking", "per_task", "images")}
    return ranking


def write_ranking(ranking: Ranking, directory: str | Path, *, extra: dict[str, Any] | None = None) -> None:
    """Write ``filter_name.txt``, ``filter_index.txt``, ``filter_cond.txt`` and ``ranking.json`` atomically.

    ``extra`` is merged into ``ranking.json`` (weights, settings, images, per_task, layer parameter counts...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(ranking.names)
    indices = ranking.indices if ranking.indices is not None else list(range(n))
    scores = ranking.scores if ranking.scores is not None else [0.0] * n
    extra = dict(extra or {})
    num_params = extra.pop("num_params", {})
    payload = {"format": "anyrestore.ram_ranking/1", **ranking.info, **extra, "num_layers": n}
    payload["ranking"] = [
        {"rank": r + 1, "name": name, "index": int(idx), "score": float(score), "num_params": num_params.get(name)}
        for r, (name, idx, score) in enumerate(zip(ranking.names, indices, scores))
    ]
    contents = {
        "filter_name.txt": "".join(f"{name}\n" for name in ranking.names),
        "filter_index.txt": "".join(f"{int(i)}\n" for i in indices),
        "filter_cond.txt": "".join(f"{float(s):f}\n" for s in scores),
        "ranking.json": json.dumps(payload, indent=1) + "\n",
    }
    for fname, text in contents.items():
        tmp = directory / f".{fname}.tmp"
        tmp.write_text(text)
        tmp.replace(directory / fname)


def check_ranking_matches(ranking: Ranking, model: nn.Module) -> None:
    """Every ranked name must be a layer of ``model`` and the name sets must be equal."""
    layers = enumerate_layers(model)
    ours, theirs = set(layers), set(ranking.names)
    if ours != theirs:
        unknown = sorted(theirs - ours)
        missing = sorted(ours - theirs)
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} unknown (e.g. {unknown[0]!r})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        raise ConfigError(
            f"ranking does not match the model's {len(layers)} layers: {'; '.join(parts)}"
        )


@dataclass(frozen=True)
class FreezeReport:
    """What :func:`freeze_except` left trainable."""

    num_layers: int
    trainable_layers: int
    total_params: int
    trainable_params: int

    @property
    def param_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def __str__(self) -> str:
        return (f"{self.trainable_layers} of {self.num_layers} layers trainable, {self.trainable_params:,} of "
                f"{self.total_params:,} parameters ({100 * self.param_share:.1f} %)")


def freeze_except(model: nn.Module, selected: list[str]) -> FreezeReport:
    """Set ``requires_grad`` so that only parameters owned by a ``selected`` layer train (exact path match).

    Must be called on the plain model, before wrapping it in DDP (names with a ``module.`` prefix are handled
    too).
    """
    net = unwrap(model)
    layers = enumerate_layers(net)
    unknown = sorted(set(selected) - set(layers))
    if unknown:
        raise ConfigError(f"selected layer {unknown[0]!r} is not a layer of the model ({len(unknown)} unknown)")
    chosen = set(selected)
    total = trainable = 0
    for name, p in net.named_parameters():
        keep = owner_of(name) in chosen
        p.requires_grad_(keep)
        total += p.numel()
        trainable += p.numel() if keep else 0
    return FreezeReport(len(layers), len(chosen), total, trainable)


def apply_ranking(model: nn.Module, ranking: Ranking | str | Path, ratio: float) -> FreezeReport:
    """Freeze ``model`` according to the first ``int(N_L · ratio)`` layers of ``ranking`` (a directory or object)."""
    if not isinstance(ranking, Ranking):
        ranking = read_ranking(ranking)
    check_ranking_matches(ranking, model)
    return freeze_except(model, ranking.select(ratio))


@register_objective("ram_finetune")
class RamFinetuneObjective:
    """RAM selective fine-tuning: plain L1 in normalised space, with the layer freeze applied in ``prepare``.

    Args:
        ranking: ranking directory (official or anyrestore format); ``None`` trains every layer.
        ratio: fraction of ranked layers to unfreeze (0.1 for RAM-SwinIR, 0.3 for RAM-PromptIR).

    ``prepare(model)`` must run before the optimiser is built (and before DDP wrapping); it sets
    ``requires_grad`` and records a :class:`FreezeReport` in ``self.report``. Call ``objective(model, batch)``
    with [0,1] ``lq``/``gt``; returns ``{"loss", "l1"}``.
    """

    def __init__(self, *, ranking: str | None = None, ratio: float = 1.0) -> None:
        num_selected(1000, ratio)  # validates the range
        if ranking is None and float(ratio) != 1.0:
            raise ConfigError(f"fine-tune ratio {ratio} needs a ranking directory (ranking: null trains every layer)")
        self.ranking = ranking
        self.ratio = float(ratio)
        self.report: FreezeReport | None = None

    def prepare(self, model: nn.Module) -> None:
        if self.ranking is None:
            self.report = freeze_except(model, enumerate_layers(model))
        else:
            self.report = apply_ranking(model, self.ranking, self.ratio)
        if current_rank() == 0:
            print(f"ram_finetune: {self.report}", flush=True)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        meta = model_meta(unwrap(model))
        out = model(meta.normalize(batch["lq"]))
        loss = (out - meta.normalize(batch["gt"])).abs().mean()
        return {"loss": loss, "l1": loss.detach()}
