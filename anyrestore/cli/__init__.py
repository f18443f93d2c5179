"""`anyrestore <command>`: one module per command.

Each command module defines ``add_parser(subparsers)`` (registers its sub-parser, with ``--help`` text) and
``run(args) -> int``. Commands are listed here explicitly; nothing is discovered by scanning.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from anyrestore.errors import AnyRestoreError

COMMANDS: tuple[str, ...] = (
    "restore",
    "eval",
    "models",
    "train",
    "test",
    "convert",
    "mac",
    "degrade",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyrestore",
        description="Blind all-in-one image restoration. Run `anyrestore <command> --help` for each command.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"anyrestore.cli.{name}")
        command_parser = module.add_parser(sub)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except AnyRestoreError as exc:
        if args.debug:
            raise
        print(f"anyrestore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anyrestore {args.command}: interrupted", file=sys.stderr)
        return 130
