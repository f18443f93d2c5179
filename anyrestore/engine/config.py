"""YAML recipes -> typed, strict dataclasses.

A recipe is one YAML file (its first line is a comment with the launch command). ``base:`` (a path or a list of
paths, relative to the recipe) names recipes merged underneath it: mappings merge key by key, everything else is
replaced. Command-line overrides ``key.sub=value`` (value parsed as YAML) are applied last. Every problem — unknown
key, wrong type, missing required key, unknown objective — is collected and reported in one
:class:`~anyrestore.errors.ConfigError` line naming the key and the file.

Defaults live only in the dataclasses below. Nested component specs (a stream's ``source`` and ``degradation``,
the ``objective``) stay mappings here and are checked by their own builders.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from anyrestore.errors import ConfigError


@dataclass
class ModelConfig:
    """The network: a registry name plus hyper-parameter overrides, optionally initialised from weights."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None  # weights file (safetensors / .pth) loaded before objective.prepare
    param_key: Literal["auto", "params", "params_ema"] = "auto"
    strict: bool = True


@dataclass
class StreamConfig:
    """One task stream of the training mixture.

    ``type: synthetic`` degrades clean images from ``source`` with the ``degradation`` sampler spec;
    ``type: paired`` reads ``lq``/``gt`` folders under the data root (pairing rules of
    :func:`anyrestore.data.datasets.gt_key`); a ``*`` folder component expands to scene sub-folders
    (``gopro/train/*/blur``). Without a natural length (dead leaves) a synthetic stream needs ``length``.
    """

    type: Literal["synthetic", "paired"]
    name: str | None = None
    weight: float = 1.0
    source: dict[str, Any] | None = None
    degradation: str | dict[str, Any] | None = None  # sampler spec (see anyrestore.degradations.build_sampler)
    lq: str | None = None
    gt: str | None = None
    pairing: Literal["stem", "name", "prefix", "rain", "lol_real"] = "stem"
    gt_suffix: str | None = None
    length: int | None = None  # synthetic sources without a natural length (generators)
    cache: bool = False  # keep clean source images in memory (generators become a fixed pool of `length`)


@dataclass
class TrainDataConfig:
    streams: list[StreamConfig]
    batch_size: int = 8  # per process
    crop: int = 64
    augment: Literal["none", "hflip", "flip_rot"] = "hflip"
    num_workers: int = 0
    epoch_length: int | None = None  # samples per epoch (all ranks); default: sum of stream lengths
    mixing: Literal["weighted", "proportional"] = "weighted"


@dataclass
class ValConfig:
    """Validation during training: either ``streams`` (a fixed synthetic/paired set) or a named ``protocol``."""

    every: int = 0  # iterations; 0 disables
    streams: list[StreamConfig] = field(default_factory=list)
    count: int = 8  # images drawn from the streams (fixed seeds)
    crop: int = 64
    protocol: str | None = None
    root: str | None = None
    metric: str = "skimage"


@dataclass
class OptimConfig:
    type: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global L2 norm; None disables


@dataclass
class ScheduleConfig:
    """``cosine``: BasicSR CosineAnnealingRestartLR with linear warm-up; ``multistep``; ``constant``."""

    type: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup: int = 0
    periods: list[int] | None = None  # cosine periods; default one period = all iterations
    restart_weights: list[float] | None = None
    eta_min: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5


@dataclass
class TrainConfig:
    iterations: int
    ema_decay: float | None = None
    amp: Literal["none", "fp16", "bf16"] = "none"
    grad_accum: int = 1
    log_every: int = 10
    ckpt_every: int = 0  # 0: only the final checkpoint
    keep_checkpoints: int = 0  # 0 keeps all
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = False  # model and 4-D batches in channels-last memory format (faster convs on CPU)
    progress: bool = True
    tensorboard: bool = True


@dataclass
class DistributedConfig:
    find_unused_parameters: bool | None = None  # None: true when some parameters are frozen
    static_graph: bool = False
    backend: Literal["auto", "nccl", "gloo"] = "auto"


@dataclass
class RunConfig:
    """A whole training recipe."""

    name: str
    model: ModelConfig
    objective: dict[str, Any]
    data: TrainDataConfig
    train: TrainConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ValConfig = field(default_factory=ValConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    output_dir: str = "runs"
    data_root: str = "datasets"
    description: str = ""


# ----------------------------------------------------------------------------------------------- loading


def load_yaml_tree(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and its ``base:`` chain into one merged mapping (no validation)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    resolved = path.resolve()
    if resolved in _seen:
        raise ConfigError(f"{path}: circular 'base:' include")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping, got {type(data).__name__}")
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, load_yaml_tree(path.parent / base, _seen + (resolved,)))
    return deep_merge(merged, data)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: mappings merge recursively, anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (value parsed as YAML; ``key.sub=null`` sets None)."""
    tree = deep_merge({}, tree)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from exc
        parts = key.strip().split(".")
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, list) and parts[i + 1].isdigit():
                child = _list_as_dict(node, part)
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
        _restore_lists(tree)
    return tree


class _IndexedList(dict):
    """Temporary dict view of a list so overrides like ``data.streams.0.weight=2`` can address items."""


def _list_as_dict(node: dict[str, Any], key: str) -> dict[str, Any]:
    view = _IndexedList({str(i): v for i, v in enumerate(node[key])})
    node[key] = view
    return view


def _restore_lists(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            _restore_lists(value)
            if isinstance(value, _IndexedList):
                node[key] = [value[str(i)] for i in range(len(value))]


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Load, merge, override and validate a training recipe.

    Raises:
        ConfigError: one line listing every problem, each naming its key, prefixed by the recipe file.
    """
    tree = apply_overrides(load_yaml_tree(path), overrides or [])
    return config_from_dict(tree, source=str(path))


def config_from_dict(tree: Mapping[str, Any], source: str = "<dict>") -> RunConfig:
    problems: list[str] = []
    config = _convert(RunConfig, tree, "", problems)
    if not problems:
        from anyrestore.engine.objectives import objective_problems

        problems.extend(objective_problems(config.objective))
        problems.extend(_semantic_problems(config))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def _semantic_problems(cfg: RunConfig) -> list[str]:
    problems = []
    positive = {
        "train.iterations": cfg.train.iterations, "data.batch_size": cfg.data.batch_size, "data.crop": cfg.data.crop,
        "train.grad_accum": cfg.train.grad_accum, "train.log_every": cfg.train.log_every,
    }
    problems += [f"{key}: must be > 0, got {value}" for key, value in positive.items() if value <= 0]
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        problems.append(f"train.ema_decay: must be in (0, 1), got {cfg.train.ema_decay}")
    if not cfg.data.streams:
        problems.append("data.streams: at least one stream is required")
    for i, stream in enumerate(cfg.data.streams + cfg.val.streams):
        where = f"data.streams.{i}" if i < len(cfg.data.streams) else f"val.streams.{i - len(cfg.data.streams)}"
        problems += _stream_problems(stream, where)
    if cfg.val.every > 0 and not cfg.val.streams and cfg.val.protocol is None:
        problems.append("val: 'every' > 0 needs 'streams' or 'protocol'")
    if len(cfg.optim.betas) != 2:
        problems.append(f"optim.betas: expected 2 values, got {len(cfg.optim.betas)}")
    sched = cfg.schedule
    if sched.type == "cosine" and sched.periods is not None:
        if sched.restart_weights is not None and len(sched.restart_weights) != len(sched.periods):
            problems.append("schedule.restart_weights: must have one weight per period")
    if sched.type == "multistep" and sorted(sched.milestones) != sched.milestones:
        problems.append("schedule.milestones: must be increasing")
    return problems


def _stream_problems(stream: StreamConfig, where: str) -> list[str]:
    problems = []
    if stream.weight <= 0:
        problems.append(f"{where}.weight: must be > 0")
    if stream.type == "synthetic":
        if stream.source is None:
            problems.append(f"{where}.source: required for a synthetic stream")
        if stream.lq is not None or stream.gt is not None:
            problems.append(f"{where}: 'lq'/'gt' belong to paired streams")
    else:
        if stream.lq is None or stream.gt is None:
            problems.append(f"{where}: paired streams need both 'lq' and 'gt'")
        if stream.source is not None:
            problems.append(f"{where}.source: only synthetic streams take a source")
    return problems


# ----------------------------------------------------------------------------------------------- typing


def _convert(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it; append problems instead of raising."""
    name = where or "<root>"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append(f"{name}: expected a mapping, got {type(value).__name__}")
            return None
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        kwargs = {}
        for key in value:
            if key not in fields:
                problems.append(f"{_join(where, key)}: unknown key" + _close(str(key), list(fields)))
        for fname, f in fields.items():
            if fname in value:
                kwargs[fname] = _convert(hints[fname], value[fname], _join(where, fname), problems)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{_join(where, fname)}: missing required key")
        try:
            return tp(**kwargs)
        except TypeError:
            return None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            problems.append(f"{name}: must not be null")
            return None
        non_none = [a for a in args if a is not type(None)]
        for arg in non_none:
            trial: list[str] = []
            out = _convert(arg, value, where, trial)
            if not trial:
                return out
        return _convert(non_none[0], value, where, problems)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            problems.append(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{name}: expected a list, got {type(value).__name__}")
            return None
        return [_convert(item_tp, v, f"{where}.{i}", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{name}: expected a mapping, got {type(value).__name__}")
            return None
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # PyYAML reads 1e-4 (no dot) as a string: accept numeric strings rather than forcing !!float tags.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{name}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{name}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config.py cannot check annotation {tp!r}")  # a bug in the dataclasses above


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _close(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_resolved(config: RunConfig, path: str | os.PathLike, *, header: str = "") -> None:
    """Write the fully resolved recipe (all defaults filled in) as YAML, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    text = (header + "\n" if header else "") + yaml.safe_dump(config_to_dict(config), sort_keys=False)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
