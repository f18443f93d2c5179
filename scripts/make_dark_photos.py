"""Write darkened copies of the training photos: clean targets of genuinely dark scenes.

Without them the default model learns "dark input = low-light degradation" and brightens every dark photo it
sees (a night or forest scene loses 10+ dB). Each copy is ``scale * x**gamma`` with seeded gamma and scale drawn
uniformly from ``--gamma`` (default [1.3, 2.4]) and ``--scale`` (default [0.35, 0.8]); the copies are then degraded
like any other clean image during training.

    python scripts/make_dark_photos.py data_cache/default_photos/train -o data_cache/dark_photos --copies 3
        # default model, stage 6: degraded only by JPEG/noise (a dark JPEG photo is not low light)
    python scripts/make_dark_photos.py data_cache/default_photos/train -o data_cache/dark_photos_mild --copies 2 \
        --gamma 1.0 1.6 --scale 0.55 0.9      # stage 6: dark, but not as dark as a low-light input
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from anyrestore.io import read_image, write_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder of clean training photos")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--copies", type=int, default=3, help="darkened copies per photo")
    parser.add_argument("--gamma", type=float, nargs=2, default=(1.3, 2.4), metavar=("LOW", "HIGH"),
                        help="range of the exponent (default 1.3 2.4)")
    parser.add_argument("--scale", type=float, nargs=2, default=(0.35, 0.8), metavar=("LOW", "HIGH"),
                        help="range of the exposure factor (default 0.35 0.8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (g0, g1), (s0, s1) = args.gamma, args.scale
    if not (0 < g0 <= g1 and 0 < s0 <= s1 <= 1):
        parser.error("need 0 < gamma LOW <= HIGH and 0 < scale LOW <= HIGH <= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    for path in sorted(args.photos.glob("*.png")):
        image = read_image(path)
        for i in range(args.copies):
            gamma = g0 + (g1 - g0) * torch.rand((), generator=generator).item()
            scale = s0 + (s1 - s0) * torch.rand((), generator=generator).item()
            target = args.out / f"{path.stem}_dark{i}.png"
            if not target.exists():
                write_image(target, (image.clamp(0, 1) ** gamma) * scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
