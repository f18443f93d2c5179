"""`anyrestore test PROTOCOL|RECIPE --model PATH|NAME [--root DIR] [--save-images]`: benchmark a model.

Prints a paper-style markdown table and writes ``<out>/<protocol>.{md,csv,json}`` (plus before/after grids with
``--save-images``). A recipe argument uses its ``val.protocol``, ``data_root`` and trained weights
(``<output_dir>/<name>/model.safetensors``) unless ``--model`` is given.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "test", help="evaluate a model on a benchmark protocol",
        description="Evaluate a model on a named protocol (ram-7task, promptir-3task, aio-5task, maskdcpt-5d, "
                    "maskdcpt-12d, unirestorer-7task) or on a training recipe's validation protocol.")
    parser.add_argument("target", help="protocol name or YAML recipe")
    parser.add_argument("--model", help="weights file or registered model name (default: the recipe's trained weights)")
    parser.add_argument("--root", help="data root holding the benchmark folders (default: recipe data_root or ./datasets)")
    parser.add_argument("--benchmarks", help="comma-separated subset of the protocol's benchmarks")
    parser.add_argument("--skip-missing", action="store_true", help="evaluate the benchmarks present, list the rest")
    parser.add_argument("--limit", type=int, help="at most this many images per benchmark (smoke runs)")
    parser.add_argument("--save-images", action="store_true", help="write input/output/target grids per image")
    parser.add_argument("--out", help="report folder (default: results/<model>)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--list", action="store_true", help="list protocols and their benchmarks, then exit")
    return parser


def _load(model_arg: str):
    from anyrestore.archs.registry import PRESETS, build_model

    path = Path(model_arg)
    if path.is_file():
        from anyrestore.checkpoints import load_model

        return load_model(path)
    from anyrestore.archs.registry import _ensure_loaded

    _ensure_loaded()
    if model_arg in PRESETS:
        return build_model(model_arg)  # untrained: useful as a pipeline check only
    from anyrestore.errors import UnknownModelError

    raise UnknownModelError(f"--model {model_arg!r}: neither an existing file nor a registered model name")


def run(args: argparse.Namespace) -> int:
    import torch

    from anyrestore.data.benchmarks import PROTOCOLS
    from anyrestore.engine.evaluate import run_protocol
    from anyrestore.errors import ConfigError
    from anyrestore.reports.tables import markdown_table, write_reports

    if args.list:
        for proto in PROTOCOLS.values():
            print(f"{proto.name} ({proto.metric}): {', '.join(proto.benchmarks)}")
        return 0
    protocol, root, model_arg = args.target, args.root, args.model
    if args.target.endswith((".yaml", ".yml")):
        from anyrestore.engine.config import load_config

        cfg = load_config(args.target)
        if cfg.val.protocol is None:
            raise ConfigError(f"{args.target}: val.protocol is not set; pass a protocol name instead")
        protocol, root = cfg.val.protocol, root or cfg.val.root or cfg.data_root
        model_arg = model_arg or str(Path(cfg.output_dir) / cfg.name / "model.safetensors")
    if model_arg is None:
        raise ConfigError("--model is required with a protocol name")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    root = root or "datasets"
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    model = _load(model_arg)
    label = Path(model_arg).stem if Path(model_arg).suffix else model_arg
    out = Path(args.out) if args.out else Path("results") / label
    benchmarks = [b.strip() for b in args.benchmarks.split(",")] if args.benchmarks else None
    result = run_protocol(model, protocol, root=root, device=device, benchmarks=benchmarks, skip_missing=args.skip_missing,
                          save_dir=out / "images" if args.save_images else None, limit=args.limit,
                          progress=True, model_name=label)
    print(markdown_table([result]), end="")
    paths = write_reports([result], out, protocol)
    print(f"wrote {paths['markdown']}, {paths['csv']}, {paths['json']}")
    return 0
