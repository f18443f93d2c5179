"""Write a folder of seeded dead-leaves images (a fixed, fast-to-read training source).

Generating dead leaves on the fly costs more than a training step on a 2-core CPU, so the default-model recipe
renders a fixed set once: image i uses seed (--seed + i), so the set is reproducible image by image.

    python scripts/make_dead_leaves.py -o data_cache/dead_leaves --count 600 --size 192
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from anyrestore.data.sources import DeadLeaves
from anyrestore.io import write_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--count", type=int, default=600, help="number of images")
    parser.add_argument("--size", type=int, default=192, help="square image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    source = DeadLeaves(size=args.size)
    for i in tqdm(range(args.count), desc="dead leaves"):
        path = args.out / f"dl_{args.seed + i:06d}.png"
        if not path.exists():
            write_image(path, source.generate(args.seed + i))
    print(f"{args.count} dead-leaves images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
