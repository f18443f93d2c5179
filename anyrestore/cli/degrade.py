"""`anyrestore degrade`: write degraded copies of images (+ JSON label sidecars), list the catalog, render a sheet."""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

from anyrestore.errors import ConfigError

SHEET_LEVELS = ("low", "medium", "high")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "degrade",
        help="synthesise degraded copies of images (noise, blur, JPEG, haze, rain, snow, low light, ...)",
        description=(
            "Write OUTDIR/<stem>.png (lossless) and OUTDIR/<stem>.json (the label: type, level, parameters, seed) "
            "for each input image. --type takes a type ('noise'), a level ('noise:25', 'blur:k15s2.0'), a '+' "
            "mixture ('blur+noise+jpeg') or a preset ('default-model', 'unirestorer-in:H-N-R'); see --list. Each "
            "image's seed is crc32('<seed>/<file name>'), so results do not depend on the other inputs."
        ),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders (scanned recursively)")
    parser.add_argument("-o", "--output", metavar="OUT", help="output folder (with --sheet: the sheet's file name)")
    parser.add_argument("--type", dest="spec", metavar="NAME", help="degradation type, level, mixture or preset")
    parser.add_argument("--level", metavar="L", help="named level (low/medium/high, ...) or value of the main parameter")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="fix a parameter or option of a single type (repeatable), e.g. --param sigma=15")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--list", action="store_true", help="print the catalog of types, levels and presets")
    parser.add_argument("--sheet", metavar="IMAGE", help="render every type at low/medium/high on IMAGE into -o")
    parser.add_argument("--tile", type=int, default=192, metavar="N", help="sheet tile size in pixels (default 192)")
    return parser


def _value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def sampler_spec(spec: str, level: str | None, params: list[str]):
    """The build_sampler spec for the command-line options."""
    if level is not None and ("+" in spec or ":" in spec):
        raise ConfigError("--level works with a single type name; put levels inside --type for mixtures, "
                          "e.g. 'haze:high+rain:high'")
    if not params:
        return f"{spec}:{level}" if level is not None else spec
    if "+" in spec or ":" in spec:
        raise ConfigError("--param works with a single type name (no ':' level or '+' mixture in --type)")
    fields: dict = {"type": spec}
    if level is not None:
        fields["level"] = level
    for item in params:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects K=V, got {item!r}")
        fields[key.strip()] = _value(val.strip())
    return fields


def catalog_text() -> str:
    from anyrestore.degradations import catalog, list_presets

    lines = ["Degradation types (parameter: valid limits, default training range):"]
    for t in catalog.TYPES.values():
        lines.append(f"  {t.name:<14} {t.description}  [synthetic: {t.synthetic}]")
        for p in t.params:
            lines.append(f"      {p.name:<12} [{p.lo:g}, {p.hi:g}]  default {json.dumps(p.default)}")
        for k, (default, allowed) in t.options.items():
            allowed_txt = f" of {list(allowed)}" if allowed is not None else ""
            lines.append(f"      option {k} = {default!r}{allowed_txt}")
        if t.levels:
            lines.append(f"      levels: {', '.join(t.levels)}"
                         + (f"; number = {t.primary}" if t.primary else "")
                         + (f"; codes {''.join(f'{k}<{v}>' for k, v in t.short.items())}" if t.short else ""))
    lines.append("Presets: " + ", ".join(list_presets()))
    lines.append("  unirestorer-{in,out}:<combo> with combo in " + ", ".join(catalog.UNIRESTORER_COMBOS))
    lines.append("Mixtures: join types/levels with '+' (applied in the canonical order: "
                 + " > ".join(catalog.CANONICAL_ORDER) + ")")
    return "\n".join(lines)


def image_seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}/{name}".encode())


def _collect(inputs: list[str]) -> list[Path]:
    from anyrestore.data.sources import list_images

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += list_images(p)
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"input not found: {p}")
    return files


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(catalog_text())
        return 0
    if args.sheet:
        if not args.output:
            raise ConfigError("--sheet needs -o SHEET.png")
        path = render_sheet(Path(args.sheet), Path(args.output), tile=args.tile, seed=args.seed)
        print(f"wrote {path}")
        return 0
    if not args.spec:
        raise ConfigError("--type is required (see --list)")
    if not args.output:
        raise ConfigError("-o OUTDIR is required")
    if not args.inputs:
        raise ConfigError("no input given: pass image files or folders")

    from anyrestore.degradations import build_sampler
    from anyrestore.io import atomic_write_bytes, read_image, write_image

    spec = sampler_spec(args.spec, args.level, args.param)
    sampler = build_sampler(spec)
    files = _collect(args.inputs)
    if not files:
        raise ConfigError(f"no images found in {', '.join(args.inputs)}")
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    plans = []
    for f in files:
        out = outdir / f"{f.stem}.png"
        if out.resolve() == f.resolve():
            raise ConfigError(f"refusing to overwrite the input {f}: choose another -o")
        if out.exists() and not args.overwrite:
            raise ConfigError(f"{out} exists: pass --overwrite to replace it")
        plans.append((f, out))
    for f, out in plans:
        clean = read_image(f)[None]
        seed = image_seed(args.seed, f.name)
        lq, labels = sampler(clean, seeds=[seed])
        label = dict(labels[0], source=str(f), spec=spec)
        write_image(out, lq[0])
        atomic_write_bytes(out.with_suffix(".json"), (json.dumps(label, indent=2, default=str) + "\n").encode())
        print(f"{f} -> {out}  [{label['type']}]")
    return 0


def render_sheet(image: Path, output: Path, *, tile: int = 192, seed: int = 0) -> Path:
    """Contact sheet: one row per type, columns clean / low / medium / high, labelled tiles."""
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F

    from anyrestore.degradations import build_sampler, catalog
    from anyrestore.io import read_image, write_image

    if tile < 32:
        raise ConfigError(f"--tile must be >= 32, got {tile}")
    img = read_image(image)
    _, h, w = img.shape
    s = min(h, w)
    img = img[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = F.interpolate(img[None], size=(tile, tile), mode="area")[0].clamp(0, 1)
    names = [n for n in catalog.TYPES if n != "identity"]
    rows = []
    for name in names:
        tiles = [(img, f"{name}: clean")]
        for level in SHEET_LEVELS:
            sampler = build_sampler(f"{name}:{level}")
            lq, _ = sampler(img[None], seeds=[image_seed(seed, f"{name}:{level}")])
            tiles.append((lq[0], f"{name}:{level}"))
        row = []
        for t, text in tiles:
            arr = np.ascontiguousarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            cv2.rectangle(arr, (0, 0), (tile, 16), (0, 0, 0), thickness=-1)
            cv2.putText(arr, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
            row.append(arr)
        rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    return write_image(output, torch.from_numpy(sheet).permute(2, 0, 1).float() / 255.0)
