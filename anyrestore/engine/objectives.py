"""Training objectives: the one place where methods plug into the trainer.

An objective is any object with

* ``__call__(model, batch) -> dict[str, Tensor]``: must contain a scalar ``"loss"`` (back-propagated); every
  other scalar entry is logged as-is.
* optionally ``prepare(model) -> nn.Module | None``: called once, after the model is built (and pretrained
  weights loaded) but before the optimiser and DDP wrapper are created. It may freeze parameters
  (``requires_grad_(False)``; frozen parameters never reach the optimiser) or return a replacement module (a
  method wrapper around the backbone) that is then trained and checkpointed instead.

Objectives are registered by name and chosen in the recipe (``objective: {type: l1, weight: 1.0}``); the remaining
keys are the constructor's keyword arguments, checked against its signature when the recipe is loaded. The trainer
never tests method names.

The batch a trainer passes is a dict with:

* ``lq``, ``gt``: float tensors (B,3,H,W) in [0,1] on the training device (objectives normalise them with
  ``model.meta.normalize`` when the model works in a normalised space, see :func:`model_space`);
* ``class_index``: LongTensor (B,) degradation class of each sample (-1 when unknown) and ``labels``: the list of
  per-sample label dicts from the degradation sampler / stream;
* ``iteration``: the 1-based iteration number being computed;
* ``generator``: a ``torch.Generator`` on the training device seeded from (seed, rank, iteration). Objectives draw
  all their randomness (masks...) from it, which keeps resumed runs bit-identical without extra state.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from anyrestore.errors import ConfigError

OBJECTIVES: dict[str, Callable[..., Any]] = {}


@runtime_checkable
class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...


def register_objective(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering an objective class (or factory) under ``name``.

    The constructor must take keyword-only arguments; they are the recipe keys next to ``type``.
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is registered twice")
        OBJECTIVES[name] = factory
        return factory

    return wrap


def _ensure_loaded() -> None:
    import anyrestore.methods.supervised  # noqa: F401  (the baseline objectives)

    # Method packages register their own objectives on import; import the ones that exist.
    import importlib

    for module in ("anyrestore.methods.ram", "anyrestore.methods.maskdcpt", "anyrestore.methods.unirestorer"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise


def list_objectives() -> list[str]:
    _ensure_loaded()
    return sorted(OBJECTIVES)


def objective_problems(spec: Mapping[str, Any], where: str = "objective") -> list[str]:
    """Every problem with an objective spec (unknown type, unknown/missing keyword), as short strings."""
    _ensure_loaded()
    if not isinstance(spec, Mapping):
        return [f"{where}: expected a mapping with a 'type' key, got {type(spec).__name__}"]
    name = spec.get("type")
    if not isinstance(name, str):
        return [f"{where}.type: missing (known: {', '.join(sorted(OBJECTIVES))})"]
    if name not in OBJECTIVES:
        close = difflib.get_close_matches(name, list(OBJECTIVES), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(OBJECTIVES))}"
        return [f"{where}.type: unknown objective {name!r} ({hint})"]
    params = inspect.signature(OBJECTIVES[name]).parameters
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    problems = []
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_any:
        for key in kwargs:
            if key not in params or params[key].kind is inspect.Parameter.VAR_POSITIONAL:
                problems.append(f"{where}.{key}: unknown key for objective {name!r}")
    for pname, p in params.items():
        if p.default is inspect.Parameter.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            if pname not in kwargs:
                problems.append(f"{where}.{pname}: missing required key for objective {name!r}")
    return problems


def build_objective(spec: Mapping[str, Any]) -> Any:
    """Build the objective described by ``{type: name, **kwargs}``.

    Raises:
        ConfigError: unknown type, unknown or missing keyword, or a value the constructor rejects.
    """
    problems = objective_problems(spec)
    if problems:
        raise ConfigError("; ".join(problems))
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        return OBJECTIVES[spec["type"]](**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"objective {spec['type']!r}: {exc}") from exc


def model_space(model: nn.Module) -> Any:
    """The :class:`~anyrestore.archs.registry.ModelMeta` of ``model`` (unwrapping DDP), for normalize/denormalize."""
    from anyrestore.archs.registry import model_meta

    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return model_meta(inner)
