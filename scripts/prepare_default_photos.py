"""Fetch and prepare the Debian wallpaper photographs used to train the default model.

Downloads `mate-backgrounds` and `plasma-workspace-wallpapers` with `apt-get download` (no root needed),
unpacks them with `dpkg-deb -x`, keeps only the photographs listed below (the abstract and rendered art is
left out), downscales each so its shorter side is at most --short-side pixels (INTER_AREA, which also averages
away sensor noise and compression artefacts so the images are clean targets) and writes PNGs into
OUT/train and OUT/holdout. The held-out photos are never trained on; benchmarks/default_model.py evaluates on them.

    python scripts/prepare_default_photos.py -o data_cache/default_photos
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")

# Photographs only (paths inside the unpacked packages). Chosen by looking at every image of both packages.
MATE = "usr/share/backgrounds/mate/nature/{}.jpg"
PLASMA = "usr/share/wallpapers/{}/contents/images"
TRAIN = [MATE.format(n) for n in ("Aqua", "Blinds", "FreshFlower", "Garden", "GreenMeadow", "RainDrops",
                                  "TwoWings", "Wood", "YellowFlower")]
TRAIN += [PLASMA.format(n) for n in ("BytheWater", "ColdRipple", "ColorfulCups", "FallenLeaf", "Grey", "Kite",
                                     "OneStandsOut", "Volna", "summer_1am")]
HOLDOUT = [MATE.format(n) for n in ("LadyBird", "Dune", "Storm")]
HOLDOUT += [PLASMA.format(n) for n in ("EveningGlow", "Path")]


def _largest_image(folder: Path) -> Path:
    images = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not images:
        raise FileNotFoundError(f"no image in {folder}")
    # File names are WIDTHxHEIGHT; pick the largest landscape one.
    def area(p: Path) -> int:
        w, _, h = p.stem.partition("x")
        return int(w) * int(h) if w.isdigit() and h.isdigit() and int(w) >= int(h) else 0
    return max(sorted(images), key=area)


def _resolve(root: Path, rel: str) -> Path:
    path = root / rel
    return _largest_image(path) if path.is_dir() else path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (train/ and holdout/ inside)")
    parser.add_argument("--short-side", type=int, default=720, help="downscale so the shorter side is at most this")
    parser.add_argument("--debs", type=Path, default=None, help="folder with already downloaded .deb files")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        debs = args.debs
        if debs is None:
            debs = tmp / "debs"
            debs.mkdir()
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
        root = tmp / "root"
        for deb in sorted(debs.glob("*.deb")):
            if deb.name.startswith(PACKAGES):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for split, names in (("train", TRAIN), ("holdout", HOLDOUT)):
            out_dir = args.out / split
            out_dir.mkdir(parents=True, exist_ok=True)
            for rel in names:
                src = _resolve(root, rel)
                img = cv2.imread(str(src), cv2.IMREAD_COLOR)
                if img is None:
                    print(f"cannot read {src}", file=sys.stderr)
                    return 1
                scale = args.short_side / min(img.shape[:2])
                if scale < 1:
                    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                name = rel.split("/")[3] if "wallpapers" in rel else Path(rel).stem
                cv2.imwrite(str(out_dir / f"{name}.png"), img)
            print(f"{split}: {len(names)} photos -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
