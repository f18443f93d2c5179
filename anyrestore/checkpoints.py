"""Safe checkpoint reading, family detection and our safetensors format (conventions.md §1).

Public API:

* :func:`load_model` — any supported weights file -> eval-mode ``nn.Module`` with ``.meta``.
* :func:`load_state_dict_file` — read + unwrap + strip prefixes -> ``(state_dict, metadata)``.
* :func:`save_model` — write one weight set in anyrestore's safetensors format.
* :func:`save_training_weights` — ``params.``/``params_ema.`` prefixed safetensors for training runs.
* :func:`canonicalize` — unwrap a loaded object into a flat state dict (no file access).
* :func:`export_state_dict` — a model's weights in a foreign family layout (inverse rename maps).
* :func:`save_state_dict_file` — a plain ``.safetensors`` / BasicSR ``.pth`` for other software.

Nothing is ever unpickled beyond tensors: ``.safetensors`` goes through safetensors, everything else through
``torch.load(weights_only=True)``; a refused global raises :class:`UnsafeCheckpointError` naming it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from anyrestore.archs.registry import FAMILIES, CheckpointFamily, ModelMeta, _ensure_loaded, build_arch
from anyrestore.errors import AnyRestoreError, CheckpointMismatchError, UnsafeCheckpointError
from anyrestore.io import new_file_mode

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
PARAM_KEYS = ("params_ema", "params")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "params-ema")
_PREFIXES = ("module.", "_orig_mod.", "net.", "netG.")
_FAMILY_NAMES = ("official", "ram", "maskdcpt", "unirestorer", "promptir_lightning")


class CheckpointReadError(AnyRestoreError):
    """A checkpoint file is missing, unreadable or holds no state dict."""


@dataclass
class LoadReport:
    """What :func:`load_state_dict_file` did to get from the file to a flat state dict."""

    path: str
    sha256: str
    param_key: str | None = None
    stripped: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointReadError(f"cannot read safetensors file {path.name}: {exc}") from None
    weight_sets = metadata.get("weight_sets")
    if weight_sets:  # training checkpoint: regroup "params.<k>" / "params_ema.<k>"
        grouped: dict[str, Any] = {name: {} for name in weight_sets.split(",")}
        for key, value in tensors.items():
            head, _, rest = key.partition(".")
            if head not in grouped or not rest:
                raise CheckpointReadError(f"{path.name}: key {key!r} is not in a declared weight set ({weight_sets})")
            grouped[head][rest] = value
        return grouped, metadata
    return tensors, metadata


def _read_failure_detail(exc: Exception) -> str:
    """One line saying why torch could not read a file. torch's weights-only failures open with generic advice to
    turn the safety off, which is wrong for a file that is simply not a checkpoint; the real cause comes later."""
    message = str(exc).strip()
    if isinstance(exc, EOFError) or not message:
        return "the file is empty or truncated" if isinstance(exc, EOFError) else type(exc).__name__
    marker = "WeightsUnpickler error:"
    if marker in message:
        cause = message.split(marker, 1)[1].strip().splitlines()
        return f"not a PyTorch weights file ({cause[0].strip() if cause else 'unreadable pickle'})"
    return message.splitlines()[0]


def _refused_globals(message: str) -> list[str]:
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", message))) or sorted(
        set(re.findall(r"Unsupported global: ([\w.]+)", message))
    )


def read_checkpoint(
    path: str | os.PathLike,
    *,
    allow_globals: Iterable[Any] = (),
    trust: bool = False,
) -> tuple[Any, dict[str, str]]:
    """Read a weights file without executing code; returns ``(object, safetensors metadata or {})``.

    Args:
        allow_globals: classes/functions to allow in the tensor-only unpickler (``torch.serialization.safe_globals``).
        trust: unpickle with ``weights_only=False``. Only for files the caller vouches for; logs a warning with the
            file's sha256. Never used automatically.

    Raises:
        CheckpointReadError: the file is missing or not a readable checkpoint.
        UnsafeCheckpointError: the file needs pickled globals that are not allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if trust:
        log.warning("loading %s with full unpickling (trusted by the caller), sha256 %s", path, file_sha256(path))
        return torch.load(path, map_location="cpu", weights_only=False), {}
    try:
        with torch.serialization.safe_globals(list(allow_globals)):
            return torch.load(path, map_location="cpu", weights_only=True), {}
    except Exception as exc:  # torch raises UnpicklingError (refused global) or RuntimeError (not a torch file)
        message = str(exc)
        refused = _refused_globals(message)
        if refused:
            raise UnsafeCheckpointError(
                f"{path.name} needs pickled code to load (refused global: {', '.join(refused)}); if you trust the "
                "file, allow those classes with allow_globals=[...] or pass trust=True / --trust-checkpoint"
            ) from None
        raise CheckpointReadError(f"cannot read checkpoint {path.name}: {_read_failure_detail(exc)}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def canonicalize(obj: Any, *, param_key: str = "auto") -> tuple[dict[str, torch.Tensor], str | None, list[str]]:
    """Unwrap containers and strip shared prefixes (conventions.md §1.2 steps 2-3).

    Args:
        obj: what the file held (a state dict, a BasicSR ``{'params', 'params_ema'}`` dict, a Lightning ``.ckpt``...).
        param_key: ``"auto"`` (``params_ema`` if present, else ``params``), ``"params"``, ``"params_ema"`` or any
            other top-level key. A missing ``params``/``params_ema`` falls back to the other one with a warning.

    Returns:
        ``(state_dict, param_key_used or None, prefixes_stripped)``; the input is not modified.

    Raises:
        CheckpointReadError: no state dict can be found.
    """
    used: str | None = None
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    if param_key != "auto" and not _is_state_dict(obj):
        if param_key in obj:
            used = param_key
        elif param_key in PARAM_KEYS and (other := PARAM_KEYS[1 - PARAM_KEYS.index(param_key)]) in obj:
            warnings.warn(f"checkpoint has no {param_key!r} weights; using {other!r}", stacklevel=3)
            used = other
        else:
            raise CheckpointReadError(
                f"checkpoint has no {param_key!r} entry; top-level keys: {', '.join(map(str, list(obj)[:10]))}"
            )
        obj = obj[used]
    for _ in range(8):
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping):
            raise CheckpointReadError(f"checkpoint entry is a {type(obj).__name__}, not a dict of tensors")
        if used is None and param_key == "auto" and any(k in obj for k in PARAM_KEYS):
            used = next(k for k in PARAM_KEYS if k in obj)
            obj = obj[used]
            continue
        container = next((k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if container is not None:
            obj = obj[container]
            continue
        dicts = [v for v in obj.values() if isinstance(v, Mapping)]
        if len(dicts) == 1 and len(obj) == 1:
            obj = dicts[0]
            continue
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)][:10]
        raise CheckpointReadError(
            f"no state dict found: entries that are not tensors: {', '.join(bad)}; pass param_key to pick one"
        )
    if not _is_state_dict(obj):
        raise CheckpointReadError("no state dict found (containers nested too deeply)")
    sd = dict(obj)
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, used, stripped


def load_state_dict_file(
    path: str | os.PathLike,
    *,
    param_key: str = "auto",
    allow_globals: Iterable[Any] = (),
    trust: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read any supported weights file into a flat state dict (file layout, not yet renamed).

    Returns:
        ``(state_dict, metadata)``; ``metadata`` holds the safetensors metadata (our format: ``arch``,
        ``arch_kwargs``, ``meta``...) and is ``{}`` for pickle-based files.
    """
    sd, metadata, _ = _load_with_report(path, param_key=param_key, allow_globals=allow_globals, trust=trust)
    return sd, metadata


def _load_with_report(path, *, param_key, allow_globals, trust):
    obj, metadata = read_checkpoint(path, allow_globals=allow_globals, trust=trust)
    sd, used, stripped = canonicalize(obj, param_key=param_key)
    report = LoadReport(path=str(path), sha256=file_sha256(path), param_key=used, stripped=stripped, metadata=metadata)
    return sd, metadata, report


# ---------------------------------------------------------------------------------------------- writing


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tensors_for_safetensors(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in sd.items():
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() and ptr in storages:
            tensor = tensor.clone()  # safetensors refuses tensors that share memory
        storages.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _model_metadata(model: nn.Module) -> dict[str, str]:
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise ValueError(f"{type(model).__name__} is not a registered architecture (no arch_name); build it with "
                         "anyrestore.build_model")
    kwargs = getattr(model, "arch_kwargs", {})
    meta: ModelMeta = getattr(model, "meta", None) or ModelMeta()
    normalization = "none" if meta.mean is None else json.dumps({"mean": meta.mean, "std": meta.std})
    import anyrestore

    out = {
        "anyrestore_format": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": json.dumps(_jsonable(kwargs), sort_keys=True),
        "meta": json.dumps(_jsonable(meta.to_dict())),
        "normalization": normalization,
        "input_range": "0,1",
        "anyrestore_version": anyrestore.__version__,
        "torch_version": torch.__version__,
    }
    if getattr(model, "preset_name", None):
        out["preset"] = model.preset_name
    return out


def _str_metadata(extra: Mapping[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(_jsonable(v)) for k, v in extra.items() if v is not None}


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    weights: str = "raw",
    **metadata: Any,
) -> Path:
    """Write ``model`` in anyrestore's safetensors format (conventions.md §1.3), atomically.

    Args:
        model: a registry-built model (has ``arch_name``, ``arch_kwargs``, ``meta``).
        path: output ``.safetensors`` file.
        state_dict: weights to store instead of ``model.state_dict()`` (e.g. the EMA copy); canonical layout.
        weights: ``"raw"`` or ``"ema"``, recorded in the metadata.
        **metadata: extra string-able metadata (``source_sha256``, ``family_origin``, ...); non-strings are JSON.

    Returns:
        The written path. :func:`load_model` rebuilds the model from the metadata without detection.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"output must be a .safetensors file, got {path.name}")
    if weights not in ("raw", "ema"):
        raise ValueError(f"weights must be 'raw' or 'ema', got {weights!r}")
    sd = state_dict if state_dict is not None else model.state_dict()
    meta = {**_model_metadata(model), "weights": weights, **_str_metadata(metadata)}
    _atomic_save(_tensors_for_safetensors(sd), meta, path)
    return path


def save_training_weights(
    path: str | os.PathLike,
    *,
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor] | None = None,
    model: nn.Module | None = None,
    **metadata: Any,
) -> Path:
    """Write a training checkpoint's weights: keys ``params.<k>`` [+ ``params_ema.<k>``] in one safetensors file.

    With ``model`` the architecture metadata is stored too, so :func:`load_model` can build from it (EMA weights
    are chosen by default, as for BasicSR files).
    """
    path = Path(path)
    tensors = {f"params.{k}": v for k, v in params.items()}
    sets = ["params"]
    if params_ema is not None:
        tensors.update({f"params_ema.{k}": v for k, v in params_ema.items()})
        sets.append("params_ema")
    meta = _model_metadata(model) if model is not None else {}
    meta.update({"weight_sets": ",".join(sets), **_str_metadata(metadata)})
    _atomic_save(_tensors_for_safetensors(tensors), meta, path)
    return path


# ---------------------------------------------------------------------------------------------- matching


def _pattern(key: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".N", key)


_REFERENCE_KEYS: dict[tuple[str, str], set[str]] = {}


def _family_reference_keys(fam: CheckpointFamily) -> set[str]:
    """Key patterns (digits -> N) of the family's layout, from a default-built model on the meta device."""
    ident = (fam.arch, fam.family)
    if ident not in _REFERENCE_KEYS:
        try:
            with torch.device("meta"):
                model = build_arch(fam.arch)
            sd = model.state_dict()
            if fam.from_canonical is not None:
                sd = fam.from_canonical(sd)
            _REFERENCE_KEYS[ident] = {_pattern(k) for k in sd}
        except Exception:  # an arch that cannot build with defaults simply does not take part in the ranking
            _REFERENCE_KEYS[ident] = set()
    return _REFERENCE_KEYS[ident]


def closest_families(sd: Mapping[str, Any], families: Iterable[CheckpointFamily] | None = None):
    """Families ranked by key-pattern overlap (Jaccard) with ``sd``: ``[(ratio, family), ...]`` best first."""
    _ensure_loaded()
    patterns = {_pattern(k) for k in sd}
    ranked = []
    for fam in families if families is not None else FAMILIES:
        ref = _family_reference_keys(fam)
        if ref:
            ranked.append((len(patterns & ref) / len(patterns | ref), fam))
    ranked.sort(key=lambda item: -item[0])
    return ranked


_MASKDCPT_STAGE = re.compile(r"^(encoders\.\d+|middle_blks|decoder\d|encoder_level\d|latent|decoder_level\d|refinement)"
                             r"\.blocks\.|^encode_layers\.")


def _hint(sd: Mapping[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith("net.") for k in keys):
        return "file has `net.` prefix: Lightning checkpoint, use family promptir_lightning"
    if any(k in ("params", "params_ema") or k.startswith(("params.", "params_ema.")) for k in keys):
        return "`params` wrapper present: do not call load_state_dict on the raw file"
    if any(_MASKDCPT_STAGE.match(k) for k in keys):
        return "keys contain `.blocks.`: MaskDCPT layout, use family maskdcpt"
    if any(re.match(r"l\d_experts\.", k) for k in keys):
        return "keys carry `lN_experts.i.`: a UniRestorer mixture, load it with the unirestorer method"
    if any(k.startswith("module.") for k in keys):
        return "some keys carry `module.`: a partially DataParallel-saved file"
    return "check the architecture (--arch) and family (--family), or load with strict=False to see what matches"


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else "?"


def mismatch_report(
    *,
    report: LoadReport,
    arch: str,
    family: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[tuple[str, torch.Size, torch.Size]],
    sd: Mapping[str, torch.Tensor],
    ours: Mapping[str, torch.Tensor],
) -> str:
    """The conventions.md §1.2 step 6 text (first 10 entries of each list, closest family, hint)."""
    lines = [
        f"{Path(report.path).name} (sha256 {report.sha256[:12]}) does not match {arch} (family {family}): "
        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} shape-mismatched keys",
    ]
    if missing:
        lines.append("  missing: " + ", ".join(f"{k} {_shape(ours.get(k))}" for k in missing[:10]))
    if unexpected:
        lines.append("  unexpected: " + ", ".join(f"{k} {_shape(sd.get(k))}" for k in unexpected[:10]))
    if mismatched:
        lines.append("  shape mismatch (ours vs file): " + ", ".join(
            f"{k} {'x'.join(map(str, a))} vs {'x'.join(map(str, b))}" for k, a, b in mismatched[:10]))
    ranked = closest_families(sd)
    if ranked:
        ratio, fam = ranked[0]
        lines.append(f"  closest family by key overlap: {fam.arch}/{fam.family} ({ratio:.0%})")
    lines.append("  hint: " + _hint(sd))
    return "\n".join(lines)


def _compare(model: nn.Module, sd: Mapping[str, torch.Tensor]):
    ours = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    tolerated = tuple(re.compile(p) for p in getattr(model, "CHECKPOINT_TOLERATED", ()))
    missing = [k for k in ours if k not in sd and k not in buffers]
    unexpected = [k for k in sd if k not in ours]
    mismatched, kept = [], []
    for k, v in sd.items():
        if k in ours and ours[k].shape != v.shape:
            if k in buffers or any(p.fullmatch(k) for p in tolerated):
                kept.append(k)  # derived buffers / size-dependent tokens: our own value stays
            else:
                mismatched.append((k, ours[k].shape, v.shape))
    return ours, missing, unexpected, mismatched, kept


def load_into(
    model: nn.Module,
    sd: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    report: LoadReport | None = None,
    family: str = "official",
) -> nn.Module:
    """Load a canonical-layout ``sd`` into ``model`` with the mismatch report of conventions.md §1.2 step 6.

    Missing buffers keep the model's values; buffers (and keys listed in the model's ``CHECKPOINT_TOLERATED``
    regexes) with another shape keep the model's value with a warning. Tensors are cast to the model's dtype.

    Raises:
        CheckpointMismatchError: ``strict`` and any key is missing, unexpected or of another shape.
    """
    report = report or LoadReport(path="<state dict>", sha256="-" * 12)
    ours, missing, unexpected, mismatched, kept = _compare(model, sd)
    if missing or unexpected or mismatched:
        text = mismatch_report(report=report, arch=getattr(model, "arch_name", type(model).__name__), family=family,
                               missing=missing, unexpected=unexpected, mismatched=mismatched, sd=sd, ours=ours)
        if strict:
            raise CheckpointMismatchError(text)
        warnings.warn("loading the matching keys only (strict=False):\n" + text, stacklevel=3)
    if kept:
        warnings.warn(f"kept the model's own value for {len(kept)} size-dependent tensors: {', '.join(kept[:5])}",
                      stacklevel=3)
    skip = set(unexpected) | {k for k, _, _ in mismatched} | set(kept)
    new = dict(ours)
    for k, v in sd.items():
        if k not in skip:
            new[k] = v.to(dtype=ours[k].dtype) if v.is_floating_point() else v
    model.load_state_dict(new, strict=True)
    return model


# ---------------------------------------------------------------------------------------------- loading


def _select_family(sd: Mapping[str, torch.Tensor], *, family: str, arch: str | None) -> CheckpointFamily | None:
    _ensure_loaded()
    wanted = "official" if family == "promptir_lightning" else family
    if family not in ("auto", *_FAMILY_NAMES):
        raise AnyRestoreError(
            f"unknown checkpoint family {family!r}; expected auto or one of {', '.join(_FAMILY_NAMES)}")
    candidates = [f for f in FAMILIES if (arch is None or f.arch == arch) and (family == "auto" or f.family == wanted)]
    for fam in candidates:
        try:
            if fam.detect(sd):
                return fam
        except Exception:  # a detector that chokes on a foreign layout just does not match
            continue
    if arch is not None and candidates:  # nothing detected: try the requested (or official) layout of that arch
        fallback = wanted if family != "auto" else "official"
        return next((f for f in candidates if f.family == fallback), candidates[0])
    return None


def _no_family_message(path, sd: Mapping[str, torch.Tensor], report: LoadReport, arch: str | None) -> str:
    ranked = closest_families(sd)
    scope = f" of arch {arch!r}" if arch else ""
    text = (f"{Path(path).name} (sha256 {report.sha256[:12]}): no known checkpoint family{scope} matches its "
            f"{len(sd)} keys")
    if ranked:
        ratio, fam = ranked[0]
        ref = _family_reference_keys(fam)
        unmatched = [k for k in sd if _pattern(k) not in ref][:10]
        text += f"; closest family by key overlap: {fam.arch}/{fam.family} ({ratio:.0%})"
        if unmatched:
            text += f"; keys it does not have: {', '.join(unmatched)}"
    else:
        text += f" (first: {', '.join(list(sd)[:10])})"
    return text + f"; hint: {_hint(sd)}"


def load_model(
    path: str | os.PathLike,
    *,
    strict: bool = True,
    param_key: str = "auto",
    family: str = "auto",
    arch: str | None = None,
    allow_globals: Iterable[Any] = (),
    trust: bool = False,
) -> nn.Module:
    """Build and load a model from any supported weights file; returns it in eval mode with ``.meta``.

    Supports anyrestore safetensors (architecture from the metadata), bare state dicts, BasicSR
    ``{'params', 'params_ema'}``, Lightning ``.ckpt`` (``state_dict`` with ``net.``), ``module.``/``_orig_mod.``
    prefixes, and every checkpoint family registered by the architecture modules (official, ram, maskdcpt...).

    Args:
        path: ``.pth``/``.pt``/``.ckpt``/``.safetensors`` file.
        strict: refuse missing/unexpected/shape-mismatched keys (otherwise load the intersection and warn).
        param_key: ``auto``, ``params``, ``params_ema`` or another top-level key (see :func:`canonicalize`).
        family: ``auto`` (detect) or one of official, ram, maskdcpt, unirestorer, promptir_lightning.
        arch: registry architecture name to restrict detection to (or to force when nothing is detected).
        allow_globals, trust: see :func:`read_checkpoint`.

    Raises:
        CheckpointReadError, UnsafeCheckpointError, CheckpointMismatchError, UnknownModelError.
    """
    sd, metadata, report = _load_with_report(path, param_key=param_key, allow_globals=allow_globals, trust=trust)
    if metadata.get("anyrestore_format") or ("arch" in metadata and "arch_kwargs" in metadata):
        built_arch = metadata["arch"]
        if arch is not None and arch != built_arch:
            raise CheckpointMismatchError(f"{Path(path).name} holds a {built_arch!r} model, not {arch!r}")
        meta = ModelMeta.from_dict(json.loads(metadata["meta"])) if "meta" in metadata else None
        model = build_arch(built_arch, meta, **json.loads(metadata.get("arch_kwargs", "{}")))
        model.preset_name = metadata.get("preset")
        fam_name = "official"
    else:
        fam = _select_family(sd, family=family, arch=arch)
        if fam is None:
            raise CheckpointMismatchError(_no_family_message(path, sd, report, arch))
        try:
            kwargs = fam.infer_kwargs(sd)
        except Exception as exc:  # shapes that do not fit the family's inference rules
            raise CheckpointMismatchError(
                f"{Path(path).name}: cannot infer {fam.arch} hyper-parameters for family {fam.family}: "
                f"{type(exc).__name__}: {exc}") from None
        model = build_arch(fam.arch, fam.meta, **kwargs)
        sd = fam.to_canonical(sd)
        fam_name = "promptir_lightning" if "net." in report.stripped and fam.family == "official" else fam.family
    load_into(model, sd, strict=strict, report=report, family=fam_name)
    model.eval()
    model.checkpoint_info = {"path": str(path), "sha256": report.sha256, "family": fam_name,
                             "param_key": report.param_key, "stripped": list(report.stripped)}
    return model


def _effective_kwargs(model: nn.Module) -> dict[str, Any]:
    """Constructor defaults along the class hierarchy (subclass defaults win), overridden by ``arch_kwargs``."""
    import inspect

    kwargs: dict[str, Any] = {}
    for cls in reversed(type(model).__mro__):
        if issubclass(cls, nn.Module) and cls is not nn.Module and "__init__" in vars(cls):
            for param in inspect.signature(cls.__init__).parameters.values():
                if param.kind is param.KEYWORD_ONLY and param.default is not param.empty:
                    kwargs[param.name] = param.default
    kwargs.update(getattr(model, "arch_kwargs", {}))
    return kwargs


def export_state_dict(model: nn.Module, family: str = "official", *, check: bool = True) -> dict[str, torch.Tensor]:
    """The model's weights in a family's file layout (inverse rename map), e.g. to write a MaskDCPT-style file.

    With ``check`` the family's own hyper-parameter inference is run on the result and must give back the model's
    values (for example a NAFNet with LN eps 1e-6 is refused as ``maskdcpt``, whose code would run it with 1e-5).

    Raises:
        AnyRestoreError: the architecture has no such family, or the exported file would not reproduce the model.
    """
    _ensure_loaded()
    arch = getattr(model, "arch_name", None)
    fam = next((f for f in FAMILIES if f.arch == arch and f.family == family), None)
    if fam is None or fam.from_canonical is None:
        known = sorted({f.family for f in FAMILIES if f.arch == arch and f.from_canonical is not None})
        raise AnyRestoreError(f"cannot export {arch!r} as family {family!r}; exportable: {', '.join(known) or 'none'}")
    sd = fam.from_canonical(model.state_dict())
    if check:
        inferred = _jsonable(fam.infer_kwargs(sd))
        ours = _jsonable(_effective_kwargs(model))
        differ = [f"{k}={ours[k]!r} (family {family} implies {inferred[k]!r})"
                  for k in sorted(set(inferred) & set(ours)) if inferred[k] != ours[k]]
        if differ:
            raise AnyRestoreError(f"{arch} cannot be exported as {family} without changing its numerics: "
                                  + "; ".join(differ))
    return sd


def save_state_dict_file(sd: Mapping[str, torch.Tensor], path: str | os.PathLike, **metadata: Any) -> Path:
    """Write a plain state dict: ``.safetensors`` (flat, string metadata) or ``.pth`` (BasicSR ``{'params': sd}``),
    atomically. This is the export path for other software; :func:`save_model` writes anyrestore's own format."""
    path = Path(path)
    if path.suffix == ".safetensors":
        _atomic_save(_tensors_for_safetensors(sd), _str_metadata(metadata), path)
        return path
    if path.suffix not in (".pth", ".pt"):
        raise ValueError(f"output must be .safetensors, .pth or .pt, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"params": {k: v.detach().cpu().contiguous() for k, v in sd.items()}}, tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
