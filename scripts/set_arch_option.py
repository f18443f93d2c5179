"""Write a model file again with one architecture option changed and every tensor as it was (a metadata revision).

Some options of an architecture change how the model runs, not its weights: the default model's
``whole_image_pixels`` (how large an image the Predictor restores whole) is one. A weights file records its
options in the metadata ``arch_kwargs``, so the shipped file must be revised when the preset's value changes::

    python scripts/set_arch_option.py --weights anyrestore/weights/nafnet-default.safetensors \\
        -o model.safetensors --option whole_image_pixels=4194304 --release 22

The value is read as JSON (a number, ``true``, ``null``, a list). The new model must load the old tensors strictly;
the other metadata is kept, ``revised_from_sha256`` names the input file and ``revised_option`` the change. The
file's ``preset`` stays only when the preset pins exactly the new options.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_global_stage import _preset_of, _release  # noqa: E402

from anyrestore.archs.registry import build_arch  # noqa: E402
from anyrestore.checkpoints import load_model, save_model  # noqa: E402
from anyrestore.errors import AnyRestoreError  # noqa: E402

# metadata that save_model writes itself from the model; everything else in the input file is carried over
_WRITTEN_BY_SAVE = {"arch", "arch_kwargs", "meta", "normalization", "input_range", "preset", "weights",
                    "anyrestore_format", "anyrestore_version", "torch_version"}


def parse_option(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--option must look like name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        raise ValueError(f"--option {name}: the value {value!r} is not JSON (a number, true, null, a list)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="the model file to revise")
    parser.add_argument("-o", "--out", type=Path, required=True, help="where to write the revised file")
    parser.add_argument("--option", required=True, help="name=value (JSON), e.g. whole_image_pixels=4194304")
    parser.add_argument("--release", type=int, default=None, help="write this metadata `release` number")
    args = parser.parse_args(argv)
    try:
        name, value = parse_option(args.option)
        previous = load_model(args.weights)
    except (ValueError, AnyRestoreError) as exc:
        raise SystemExit(f"set_arch_option: {exc}") from None
    if args.release is not None and args.release < 1:
        parser.error(f"--release needs a positive number, got {args.release}")
    from safetensors import safe_open

    with safe_open(str(args.weights), "pt") as f:
        metadata = f.metadata() or {}
    kept_metadata = {k: v for k, v in metadata.items() if k not in _WRITTEN_BY_SAVE}
    kwargs = {**previous.arch_kwargs, name: value}
    try:
        model = build_arch(previous.arch_name, previous.meta, **kwargs)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"set_arch_option: {previous.arch_name} does not take {name}={value!r}: {exc}") from None
    model.load_state_dict(previous.state_dict(), strict=True)
    model.arch_name, model.preset_name = previous.arch_name, _preset_of(previous, kwargs)
    save_model(model, args.out, weights=metadata.get("weights", "ema"), **{**kept_metadata, **_release(args),
                                                    "revised_from_sha256": previous.checkpoint_info["sha256"],
                                                    "revised_option": f"{name}={json.dumps(value)}"})
    print(f"wrote {args.out}: {name}={json.dumps(value)}, tensors unchanged"
          + ("" if model.preset_name else " (no preset pins these options: the file names none)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
