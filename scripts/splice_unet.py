"""Put a fine-tuned U-Net back into the full default model (recipe stage 17).

The trainer fine-tunes the default model's U-Net alone (``configs/default/snow_polish.yaml`` builds it without the
whole-image stages and the JPEG expert). This script takes the full model file the run started from, replaces its
U-Net tensors by the run's and writes a new full model; every stage head and the expert stay byte for byte::

    python scripts/splice_unet.py --weights anyrestore/weights/nafnet-default.safetensors \\
        --unet runs/default-snow-polish/model.safetensors -o model.safetensors --release 21

It refuses a U-Net file with a tensor the full model lacks or shapes that differ, and says which parts of the
U-Net changed, naming those the JPEG expert has no copy of (``jpeg_expert.*``) and shares with the U-Net (the
default model's ``encoders.3`` and ``middle_blks``): when they change, the expert's output changes too.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_global_stage import _release  # noqa: E402

from anyrestore.checkpoints import load_model, save_model  # noqa: E402
from anyrestore.errors import AnyRestoreError  # noqa: E402


def part_of(key: str) -> str:
    """The U-Net part a tensor belongs to: ``encoders.2``, ``decoders``, ``intro`` ..."""
    head, _, rest = key.partition(".")
    return f"{head}.{rest.partition('.')[0]}" if head == "encoders" else head


def splice(full: dict[str, torch.Tensor], unet: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``full`` with ``unet``'s tensors in place, and the keys whose values changed."""
    foreign = sorted(set(unet) - set(full))
    if foreign:
        raise ValueError(f"the U-Net file has {len(foreign)} tensor(s) the full model lacks, e.g. {foreign[0]}")
    shapes = [k for k in unet if unet[k].shape != full[k].shape]
    if shapes:
        k = shapes[0]
        raise ValueError(f"shape of {k} differs: {tuple(unet[k].shape)} in the U-Net file, "
                         f"{tuple(full[k].shape)} in the full model")
    changed = [k for k in unet if not torch.equal(unet[k].to(full[k].dtype), full[k])]
    return {**full, **{k: v.to(full[k].dtype) for k, v in unet.items()}}, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="the full model file the U-Net run started from")
    parser.add_argument("--unet", type=Path, required=True, help="the trainer's output (the U-Net alone)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the new full model (.safetensors)")
    parser.add_argument("--run", default="default-snow-polish", help="the metadata `run` name of the output")
    parser.add_argument("--release", type=int, default=None, help="write this metadata `release` number")
    args = parser.parse_args(argv)
    try:
        full = load_model(args.weights)
        unet = load_model(args.unet)
        state, changed = splice(full.state_dict(), unet.state_dict())
    except (AnyRestoreError, ValueError, OSError) as exc:
        raise SystemExit(f"splice_unet: {exc}") from exc
    full.load_state_dict(state, strict=True)
    parts = Counter(part_of(k) for k in changed)
    print(f"{len(changed)} of {len(unet.state_dict())} U-Net tensors changed: "
          + (", ".join(f"{p} ({n})" for p, n in sorted(parts.items())) or "none"))
    own_copy = {k.partition(".")[2] for k in state if k.startswith("jpeg_expert.")}  # what the expert owns
    shared = sorted({part_of(k) for k in changed if k not in own_copy}) if own_copy else []
    if shared:
        print(f"note: {', '.join(shared)} changed, which the JPEG expert shares: its output changes too")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(full, args.out, weights="ema", run=args.run, stage="unet_splice",
               previous_weights=args.weights.name, previous_sha256=full.checkpoint_info["sha256"],
               unet_weights=args.unet.name, unet_sha256=unet.checkpoint_info["sha256"], **_release(args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
