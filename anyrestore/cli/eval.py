"""`anyrestore eval`: PSNR/SSIM of a folder of results against a folder of ground truths."""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

from anyrestore.errors import ConfigError, ImageReadError


def add_parser(subparsers) -> argparse.ArgumentParser:
    from anyrestore.metrics import PROTOCOLS

    parser = subparsers.add_parser(
        "eval",
        help="PSNR/SSIM of predictions against ground truth (paired by file stem)",
        description=(
            "Score every image of --pred against the image with the same file stem in --gt (folders are not "
            "scanned recursively). Prints a per-image table and the mean of per-image values (2 decimals PSNR, "
            "4 decimals SSIM), or JSON records with --json. Identical images score PSNR inf and are left out of the "
            "PSNR mean."
        ),
    )
    parser.add_argument("--pred", required=True, metavar="DIR", help="folder of restored images")
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth images")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="basicsr",
                        help="metric protocol (default basicsr; see anyrestore.metrics.fullref)")
    parser.add_argument("--y", action="store_true", help="score the BT.601 Y channel instead of RGB")
    parser.add_argument("--crop", type=int, default=None, metavar="N",
                        help="pixels removed on every side (default: the protocol's, 4 for ram, else 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def run(args: argparse.Namespace) -> int:
    from anyrestore.io import read_image
    from anyrestore.metrics import dataset_mean, get_protocol, psnr, ssim

    proto = get_protocol(args.protocol)
    crop = proto.crop_border if args.crop is None else args.crop
    pairs = pair_by_stem(Path(args.pred), Path(args.gt))
    rows = []
    for stem, pred_path, gt_path in pairs:
        pred, gt = read_image(pred_path), read_image(gt_path)
        if pred.shape != gt.shape:
            raise ImageReadError(f"size mismatch for {stem}: {pred_path} is {pred.shape[2]}x{pred.shape[1]}, "
                                 f"{gt_path} is {gt.shape[2]}x{gt.shape[1]}")
        kw = dict(protocol=args.protocol, crop_border=crop, y=args.y)
        rows.append({"image": stem, "psnr": psnr(pred, gt, **kw), "ssim": ssim(pred, gt, **kw)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean_psnr = dataset_mean([r["psnr"] for r in rows])
    mean_ssim = dataset_mean([r["ssim"] for r in rows])
    record = {**proto.record(crop_border=crop, y=args.y), "count": len(rows), "psnr": mean_psnr, "ssim": mean_ssim,
              "inf_excluded": sum(1 for r in rows if math.isinf(r["psnr"])), "images": rows,
              "pred": str(args.pred), "gt": str(args.gt)}
    if args.json:
        print(json.dumps(_json_safe(record), indent=2))
        return 0
    width = max([len("image")] + [len(r["image"]) for r in rows])
    print(f"protocol {proto.name}, channel {record['channel']}, crop {crop}, quantize {record['quantize']}, "
          f"ssim {record['ssim_variant']}")
    print(f"{'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}")
    for r in rows:
        print(f"{r['image']:<{width}}  {_fmt(r['psnr'], 2):>8}  {_fmt(r['ssim'], 4):>7}")
    print(f"{'mean (' + str(len(rows)) + ')':<{width}}  {_fmt(mean_psnr, 2):>8}  {_fmt(mean_ssim, 4):>7}")
    if caught:
        print(f"note: {record['inf_excluded']} identical image(s) (PSNR inf) left out of the PSNR mean")
    return 0


def pair_by_stem(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """Sorted (stem, pred, gt) triples; raises if a folder is missing/empty or any stem lacks its partner."""
    preds, gts = _images_by_stem(pred_dir, "--pred"), _images_by_stem(gt_dir, "--gt")
    no_gt, no_pred = sorted(set(preds) - set(gts)), sorted(set(gts) - set(preds))
    if no_gt or no_pred:
        parts = []
        if no_gt:
            parts.append(f"{len(no_gt)} without ground truth: {', '.join(no_gt[:10])}{' ...' if len(no_gt) > 10 else ''}")
        if no_pred:
            parts.append(f"{len(no_pred)} without prediction: {', '.join(no_pred[:10])}{' ...' if len(no_pred) > 10 else ''}")
        raise ConfigError(f"unpaired images ({'; '.join(parts)})")
    return [(stem, preds[stem], gts[stem]) for stem in sorted(preds)]


def _images_by_stem(folder: Path, option: str) -> dict[str, Path]:
    from anyrestore.io import is_image_file

    if not folder.is_dir():
        raise ImageReadError(f"{option} folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)):
        if path.stem in found:
            raise ConfigError(f"two images with stem {path.stem!r} in {folder}: {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    if not found:
        raise ImageReadError(f"no images found in {option} folder {folder}")
    return found


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _json_safe(value):
    """Strict JSON: infinite or NaN numbers become the strings "inf" / "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
