"""How often a whole-image stage of the default model fires where it should not, and what that costs.

    python benchmarks/default_model_stage_scan.py                              # the motion stage, shipped model
    python benchmarks/default_model_stage_scan.py --model run/model.safetensors --stage sharpen --json scan.json

A stage's gate can look right on five centred crops and still open on a sixth image. This scan takes five 256²
crops of every held-out photo (the centre and the four corners), degrades each with every degradation of
``benchmarks/default_model_crosscheck.py`` (written independently of the training code; seeds from
``crc32("scan/<degradation>/<photo>/<crop>")``), and scores the model twice on each: with all its whole-image stages
and with ``--stage`` left out. Per degradation it reports the mean and worst PSNR change the stage makes, and on how
many images it changed the output by more than ``--changed`` of an 8-bit level. On the rows the stage is for (the
motion stage: motion blur), the change should be a gain; everywhere else, zero.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(REPO))

from anyrestore.api import default_model_spec, load_model  # noqa: E402
from anyrestore.archs.nafnet import WholeImageStages  # noqa: E402
from anyrestore.errors import ConfigError  # noqa: E402
from anyrestore.io import read_image  # noqa: E402
from anyrestore.metrics import psnr  # noqa: E402
from benchmarks.default_model import PROTOCOL, _f, find_photos, report_cli  # noqa: E402
from benchmarks.default_model_crosscheck import CROSSCHECK, crosscheck_keys  # noqa: E402

CROP = 256
MEANT_FOR = {"motion_deblur": ("motion_blur:medium",),  # the rows each stage is meant to act on
             "sharpen": ("blur:k15s2.0", "blur:k15s1.5+noise:15+jpeg:50"), "tone_curve": ("low_light:medium",),
             "photo_tone_curve": ("low_light:medium",),
             "chroma_denoise": ("noise:15", "noise:25", "noise:50", "blur:k15s1.5+noise:15+jpeg:50"),
             "jpeg_projection": ("jpeg:30", "jpeg:30/4:2:2", "jpeg:30/4:4:4"),
             "jpeg_expert": ("jpeg:30", "jpeg:30/4:2:2", "jpeg:30/4:4:4")}


def crops(image: torch.Tensor, side: int = CROP) -> list[torch.Tensor]:
    """The centre and the four corners (side² each; the whole image when it is smaller)."""
    h, w = image.shape[-2:]
    side_h, side_w = min(side, h), min(side, w)
    places = [((h - side_h) // 2, (w - side_w) // 2), (0, 0), (0, w - side_w), (h - side_h, 0),
              (h - side_h, w - side_w)]
    return [image[:, t:t + side_h, l:l + side_w] for t, l in places]


def stage_module(model, stage: str):
    """The model's module for ``stage``, or None when it has none."""
    return getattr(model, stage, None)


def without_stage(model, stage: str) -> WholeImageStages:
    """The model's whole-image stages with ``stage`` left out (built while the attribute is None)."""
    head = getattr(model, stage)
    setattr(model, stage, None)
    try:
        return model.global_stage or WholeImageStages([])
    finally:
        setattr(model, stage, head)


def with_and_without(model, stage: str):
    """A function of one degraded (1,3,H,W) image that returns the model's output with ``stage`` and without it.
    A whole-image stage is left out of the stages after one U-Net run; the JPEG expert (``jpeg_expert``, which
    replaces the U-Net on the images its route picks) is compared with the U-Net on those images."""
    if stage == "jpeg_expert":
        def outputs(lq: torch.Tensor) -> list[torch.Tensor]:
            route = model.expert_route(lq)  # both get the same whole-image stages, the route's exposure head too
            plain = model.global_stage(lq, model.forward_local(lq), route)
            expert = model.global_stage(lq, model.forward_expert(lq), route) if bool(route[0]) else plain
            return [expert, plain]
        return outputs
    kept, left_out = model.global_stage, without_stage(model, stage)

    def outputs(lq: torch.Tensor) -> list[torch.Tensor]:
        local = model.forward_local(lq)
        return [chain(lq, local) for chain in (kept, left_out)]
    return outputs


def scan(model, stage: str, keys: list[str], photos: list[tuple[str, torch.Tensor]], changed: float) -> list[dict]:
    outputs_of = with_and_without(model, stage)
    rows = []
    for key in keys:
        description, degrade = CROSSCHECK[key]
        deltas, fired = [], 0
        for name, photo in photos:
            for index, crop in enumerate(crops(photo)):
                clean = crop.permute(1, 2, 0).numpy().astype(np.float64)
                rng = np.random.default_rng(zlib.crc32(f"scan/{key}/{name}/{index}".encode()))
                lq = torch.from_numpy(np.ascontiguousarray(degrade(clean, rng), dtype=np.float32)).permute(2, 0, 1)
                with torch.inference_mode():
                    outputs = [out[0].clamp(0, 1) for out in outputs_of(lq[None])]
                deltas.append(psnr(outputs[0], crop, protocol=PROTOCOL) - psnr(outputs[1], crop, protocol=PROTOCOL))
                fired += int((outputs[0] - outputs[1]).abs().max() * 255 > changed)
        d = np.array(deltas)
        rows.append({"degradation": key, "description": description, "images": len(d), "mean_db": float(d.mean()),
                     "worst_db": float(d.min()), "best_db": float(d.max()), "changed": fired,
                     "losses_over_1db": int((d < -1).sum()), "meant_for": key in MEANT_FOR.get(stage, ())})
    return rows


def markdown(report: dict) -> str:
    lines = [f"Model `{report['model']}`, stage `{report['stage']}` left out vs kept; {len(report['photos'])} photo(s) "
             f"x 5 crops of {CROP}²; degradations of benchmarks/default_model_crosscheck.py; PSNR {PROTOCOL} RGB.", "",
             "| degradation | meant for it | images | changed | mean dB | worst dB | best dB | losses > 1 dB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['description']} | {'yes' if r['meant_for'] else 'no'} | {r['images']} | {r['changed']} "
                     f"| {_f(r['mean_db'], 3)} | {_f(r['worst_db'])} | {_f(r['best_db'])} | {r['losses_over_1db']} |")
    s = report["summary"]
    lines += ["", f"Elsewhere (rows the stage is not meant for): {s['losses_over_1db']} of {s['images']} images lose "
                  f"more than 1 dB; the PSNR changes sum to {_f(s['sum_db'])} dB."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint path or model name (default: the bundled model)")
    parser.add_argument("--stage", default="motion_deblur", choices=tuple(MEANT_FOR),
                        help="the whole-image stage to judge")
    parser.add_argument("--photos", default=None, help="folder of held-out photos (default: as default_model.py)")
    parser.add_argument("--degradations", default=",".join(CROSSCHECK),
                        help=f"comma-separated subset of: {', '.join(CROSSCHECK)}")
    parser.add_argument("--changed", type=float, default=1.0,
                        help="count an image as changed when a pixel moves by more than this many 8-bit levels")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the printed report as markdown")
    return parser


def run(args: argparse.Namespace) -> dict:
    if args.threads < 1:
        raise ConfigError("--threads must be >= 1")
    keys = crosscheck_keys(args.degradations)
    torch.set_num_threads(args.threads)
    spec = default_model_spec() if args.model is None else args.model
    model = load_model(spec, device="cpu").eval()
    if stage_module(model, args.stage) is None:
        raise ConfigError(f"model {spec} has no stage {args.stage!r}")
    paths = find_photos(args.photos)
    if not paths:
        raise ConfigError("no evaluation photos: pass --photos DIR or run scripts/prepare_default_photos.py")
    photos = [(p.name, read_image(p)[:3].float()) for p in paths]
    rows = scan(model, args.stage, keys, photos, args.changed)
    elsewhere = [r for r in rows if not r["meant_for"]]
    report = {"model": str(spec), "stage": args.stage, "photos": [n for n, _ in photos], "rows": rows,
              "summary": {"images": sum(r["images"] for r in elsewhere),
                          "losses_over_1db": sum(r["losses_over_1db"] for r in elsewhere),
                          "sum_db": sum(r["mean_db"] * r["images"] for r in elsewhere)}}
    return report


def main(argv: list[str] | None = None) -> int:
    return report_cli(build_parser().parse_args(argv), run, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
