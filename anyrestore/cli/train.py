"""`anyrestore train RECIPE.yaml [key.sub=value ...] [--resume]`: train from a YAML recipe.

Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m anyrestore train RECIPE.yaml`` (DDP; NCCL on GPUs,
gloo on CPU). ``data.batch_size`` is per process.
"""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model from a YAML recipe",
        description="Train a model from a YAML recipe. Overrides like `train.iterations=100` follow the recipe. "
                    "Use torchrun --nproc_per_node N -m anyrestore train ... for DDP.")
    parser.add_argument("recipe", help="YAML recipe (configs/...)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides (values parsed as YAML)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint")
    parser.add_argument("--run-dir", help="output folder (default: <output_dir>/<name>)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return parser


def run(args: argparse.Namespace) -> int:
    from anyrestore.engine.config import config_to_dict, load_config

    config = load_config(args.recipe, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    from anyrestore.engine.distributed import cleanup
    from anyrestore.engine.trainer import Trainer

    trainer = Trainer(config, run_dir=args.run_dir, resume=args.resume)
    try:
        history = trainer.fit()
        if trainer.dist.is_main:
            last = next((h for h in reversed(history) if "loss" in h), None)
            loss = f", final loss {last['loss']:.5f}" if last else ""
            print(f"trained {config.name}: {trainer.iteration} iterations{loss}; weights {trainer.run_dir / 'model.safetensors'}")
    finally:
        cleanup(trainer.dist)
    return 0
