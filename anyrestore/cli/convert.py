"""`anyrestore convert`: any supported checkpoint -> anyrestore safetensors (canonical layout + metadata), or, with
``--to FAMILY``, into a family's own layout for other software."""
from __future__ import annotations

import argparse
from pathlib import Path

from anyrestore.errors import ConfigError

FAMILIES = ("auto", "official", "ram", "maskdcpt", "unirestorer", "promptir_lightning")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (.pth/.ckpt/.safetensors) to anyrestore's safetensors format",
        description=(
            "Read a checkpoint safely (tensors only), detect its architecture and family, rename it to the canonical "
            "layout and write OUT.safetensors with the architecture, hyper-parameters, normalisation and the source "
            "file's sha256 in its metadata. The output loads with `anyrestore restore --model OUT.safetensors`."
        ),
    )
    parser.add_argument("input", metavar="IN", help="checkpoint file")
    parser.add_argument("output", metavar="OUT",
                        help="output file: .safetensors (or, with --to, .pth for a BasicSR {'params': ...} dict); "
                             "never overwritten without --overwrite")
    parser.add_argument("--family", choices=FAMILIES, default="auto", help="checkpoint family (default: detect)")
    parser.add_argument("--param-key", default="auto", metavar="K",
                        help="weight set in BasicSR files: auto (params_ema, else params), params, params_ema, ...")
    parser.add_argument("--arch", default=None, metavar="NAME", help="architecture to restrict detection to")
    parser.add_argument("--non-strict", action="store_true", help="load matching keys only (reports the rest)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling for a file you trust (never needed for plain weight files)")
    parser.add_argument("--to", default=None, choices=("official", "ram", "maskdcpt"), metavar="FAMILY",
                        help="write the weights in this family's key layout (e.g. maskdcpt, official) instead of "
                             "anyrestore's format; refused when that family's code would run different numerics")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def run(args: argparse.Namespace) -> int:
    from anyrestore.checkpoints import export_state_dict, load_model, save_model, save_state_dict_file

    out = Path(args.output)
    allowed = (".safetensors", ".pth") if args.to else (".safetensors",)
    if out.suffix not in allowed:
        raise ConfigError(f"output must end with {' or '.join(allowed)}, got {out.name}")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if Path(args.input).resolve() == out.resolve():
        raise ConfigError("input and output are the same file")
    model = load_model(args.input, strict=not args.non_strict, param_key=args.param_key, family=args.family,
                       arch=args.arch, trust=args.trust_checkpoint)
    info = model.checkpoint_info
    weights = "ema" if info.get("param_key") == "params_ema" else "raw"
    if args.to:
        sd = export_state_dict(model, args.to)
        save_state_dict_file(sd, out, source_sha256=info["sha256"], family=args.to)
    else:
        save_model(model, out, weights=weights, source_sha256=info["sha256"], family_origin=info["family"],
                   source_file=Path(args.input).name)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{Path(args.input).name}: {model.arch_name} (family {info['family']}, {n_params:,} parameters, "
          f"{weights} weights) -> {out}" + (f" ({args.to} layout)" if args.to else ""))
    return 0
