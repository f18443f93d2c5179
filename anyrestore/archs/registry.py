"""Name -> architecture, preset and checkpoint-family registries.

* An **architecture** is an ``nn.Module`` class with keyword-only hyper-parameters, registered with
  :func:`register_arch` under its backbones.md name (``nafnet``, ``ram_swinir``...).
* A **preset** is a named configuration of an architecture (``nafnet-w64``, ``swinir-ram``...) with its
  inference metadata (:class:`ModelMeta`): pad multiple and input normalisation. The Predictor reads the
  metadata and never branches on names.
* A **checkpoint family** (:class:`CheckpointFamily`) tells ``checkpoints.py`` how to recognise a foreign
  state dict, infer hyper-parameters from its shapes and rename it to the canonical layout. Each architecture
  file registers its own families.

Modules are registered by importing them by name in ``anyrestore/archs/__init__.py``; nothing is scanned.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch
from torch import nn

from anyrestore.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """What a caller must know to feed a model: it is attached to every built model as ``model.meta``.

    Attributes:
        pad_multiple: H and W must be multiples of this before the body runs (the Predictor pads).
        mean, std: per-channel input normalisation ``(x - mean) / std`` applied to [0,1] RGB input, and undone
            on the output; ``None`` means the model takes [0,1] directly.
        input_levels: the input precision the model was trained at (255: 8-bit images). The Predictor rounds its
            input to these levels first, so a float array restores exactly like the same image saved as a PNG;
            ``None`` takes the input as given. Training code does not round (its data is what it is).
    """

    pad_multiple: int = 1
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_levels: int | None = None

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB -> rounded to ``input_levels`` (unchanged without them)."""
        if self.input_levels is None:
            return x
        return torch.round(x * self.input_levels) / self.input_levels

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] RGB (B,C,H,W) -> the model's input space."""
        if self.mean is None:
            return x
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """The model's output space -> [0,1] RGB (not clamped)."""
        if self.mean is None:
            return y
        mean = y.new_tensor(self.mean).view(1, -1, 1, 1)
        std = y.new_tensor(self.std).view(1, -1, 1, 1)
        return y * std + mean

    def to_dict(self) -> dict[str, Any]:
        data = {"pad_multiple": self.pad_multiple, "mean": self.mean, "std": self.std}
        if self.input_levels is not None:  # absent otherwise: the metadata of earlier files stays as it was
            data["input_levels"] = self.input_levels
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelMeta":
        mean, std = data.get("mean"), data.get("std")
        return cls(
            pad_multiple=int(data.get("pad_multiple", 1)),
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
            input_levels=int(data["input_levels"]) if data.get("input_levels") is not None else None,
        )


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    kwargs: Mapping[str, Any]
    meta: ModelMeta
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class CheckpointFamily:
    """How to recognise and convert one checkpoint layout of one architecture.

    ``detect``, ``infer_kwargs`` and ``to_canonical`` receive an already unwrapped, prefix-stripped state
    dict (see ``checkpoints.py``) and must not modify it. ``to_canonical`` returns a new dict in the layout of
    our module; ``from_canonical`` (optional) is its inverse, used for export.
    """

    arch: str
    family: str
    detect: Callable[[Mapping[str, torch.Tensor]], bool]
    infer_kwargs: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]
    to_canonical: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] = dict
    from_canonical: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    meta: ModelMeta = field(default_factory=ModelMeta)
    priority: int = 0  # higher is tried first when several families detect the same dict


ARCHS: dict[str, type[nn.Module]] = {}
PRESETS: dict[str, Preset] = {}
FAMILIES: list[CheckpointFamily] = []


def _unknown(kind: str, name: str, known: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(known))}"
    return UnknownModelError(f"unknown {kind} {name!r}{hint}")


def register_arch(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register an architecture under ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in ARCHS:
            raise ValueError(f"architecture {name!r} is registered twice")
        ARCHS[name] = cls
        cls.arch_name = name
        return cls

    return wrap


def register_preset(
    name: str,
    arch: str,
    *,
    description: str,
    pad_multiple: int,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    input_levels: int | None = None,
    default: bool = False,
    **kwargs: Any,
) -> Preset:
    """Register a named configuration of ``arch`` with its inference metadata."""
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is registered twice")
    meta = ModelMeta(pad_multiple, mean, std, input_levels)
    preset = Preset(name, arch, MappingProxyType(dict(kwargs)), meta, description, default)
    PRESETS[name] = preset
    return preset


def register_family(family: CheckpointFamily) -> CheckpointFamily:
    if any(f.arch == family.arch and f.family == family.family for f in FAMILIES):
        raise ValueError(f"checkpoint family {family.family!r} of {family.arch!r} is registered twice")
    FAMILIES.append(family)
    FAMILIES.sort(key=lambda f: -f.priority)
    return family


def get_preset(name: str) -> Preset:
    _ensure_loaded()
    if name not in PRESETS:
        raise _unknown("model", name, list(PRESETS))
    return PRESETS[name]


def build_arch(arch: str, meta: ModelMeta | None = None, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` with explicit hyper-parameters and attach metadata."""
    _ensure_loaded()
    if arch not in ARCHS:
        raise _unknown("architecture", arch, list(ARCHS))
    model = ARCHS[arch](**kwargs)
    model.arch_kwargs = dict(kwargs)
    model.meta = meta if meta is not None else getattr(model, "meta", ModelMeta())
    return model


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered preset (or, failing that, an architecture with its defaults) by name.

    ``overrides`` replace the preset's pinned hyper-parameters. The model carries ``meta`` (:class:`ModelMeta`),
    ``arch_name``, ``arch_kwargs`` and ``preset_name``.
    """
    _ensure_loaded()
    if name in PRESETS:
        preset = PRESETS[name]
        model = build_arch(preset.arch, preset.meta, **{**preset.kwargs, **overrides})
        model.preset_name = name
        return model
    if name in ARCHS:
        model = build_arch(name, None, **overrides)
        model.preset_name = None
        return model
    raise _unknown("model", name, list(PRESETS) + list(ARCHS))


def model_meta(model: nn.Module) -> ModelMeta:
    """The metadata of a model; modules built outside the registry get the neutral default."""
    return getattr(model, "meta", None) or ModelMeta()


def list_presets() -> list[Preset]:
    _ensure_loaded()
    return [PRESETS[name] for name in sorted(PRESETS)]


def _ensure_loaded() -> None:
    import anyrestore.archs  # noqa: F401  (imports every architecture module, which registers itself)
