"""`anyrestore models`: list registered model presets."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list registered model presets",
        description=(
            "List every registered preset with its parameter count (built on the meta device: no memory, no "
            "weights), pad multiple, input normalisation and whether bundled weights exist. '*' marks the model "
            "`anyrestore restore` uses by default; 'preset default' marks presets flagged as default by their family."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def run(args: argparse.Namespace) -> int:
    rows = preset_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ("", "name", "arch", "params", "pad", "normalisation", "weights", "description")
    table = [(
        "*" if r["restore_default"] else "",
        r["name"],
        r["arch"],
        _fmt_params(r["params"]),
        str(r["pad_multiple"]),
        r["normalization"],
        "bundled" if r["bundled_weights"] else ("none needed" if r["params"] == 0 else "-"),
        r["description"] + (" (preset default)" if r["preset_default"] else ""),
    ) for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"{len(rows)} preset(s); * = default model of `anyrestore restore`")
    return 0


_PARAM_COUNTS: dict[tuple[str, int], int | None] = {}  # per process; presets are immutable once registered


def preset_rows() -> list[dict]:
    """One dict per registered preset (sorted by name)."""
    from anyrestore.api import WEIGHTS_DIR, default_model_spec, preset_parameter_count
    from anyrestore.archs.registry import IMAGENET_MEAN, IMAGENET_STD, list_presets

    default = default_model_spec()
    rows = []
    for preset in list_presets():
        key = (preset.name, id(preset))
        if key not in _PARAM_COUNTS:
            try:
                _PARAM_COUNTS[key] = preset_parameter_count(preset.name)
            except Exception:  # a preset that cannot be built on the meta device still gets listed
                _PARAM_COUNTS[key] = None
        params = _PARAM_COUNTS[key]
        meta = preset.meta
        if meta.mean is None:
            norm = "none ([0,1])"
        elif tuple(meta.mean) == IMAGENET_MEAN and tuple(meta.std) == IMAGENET_STD:
            norm = "imagenet"
        else:
            norm = f"mean={list(meta.mean)} std={list(meta.std)}"
        rows.append({
            "name": preset.name,
            "arch": preset.arch,
            "params": params,
            "pad_multiple": meta.pad_multiple,
            "normalization": norm,
            "mean": list(meta.mean) if meta.mean is not None else None,
            "std": list(meta.std) if meta.std is not None else None,
            "bundled_weights": (WEIGHTS_DIR / f"{preset.name}.safetensors").is_file(),
            "preset_default": bool(preset.default),
            "restore_default": preset.name == default,
            "description": preset.description,
        })
    return rows


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)
