"""Which fast path pays off on this machine: forward time of each backbone with every fast path alone, all of them,
and none (the plain official formulas), in fp32 and under fp16/bf16 autocast, in NCHW and channels-last.

    python benchmarks/fastpath_ablation.py --device cuda --presets restormer,nafnet-w64 --sizes 512
    python benchmarks/fastpath_ablation.py --threads 2 --presets nafnet-default --sizes 256 --precisions fp32

The fast paths are exact (tests/test_archs_fastpaths.py), so the only question is speed, and the answer differs
between a 2-core CPU and a GPU. Times are medians of ``--repeat`` round-robin rounds (benchmarks.run's timer) with
the same random weights and input for every variant; the table gives each variant's time relative to the plain
NCHW fp32 forward of the same cell (> 1 = faster). The "device default" row is the choice the Predictor makes by
default on this device for each precision (``set_device_fast_paths``). Writes markdown + JSON when ``--out`` is
given.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.run import (PRECISIONS, bench_input, bench_model, forward, machine_info,  # noqa: E402
                            round_robin_medians)

from anyrestore.archs.fastpaths import (FAST_PATHS, optimize_model, set_device_fast_paths,  # noqa: E402
                                         set_fast_paths)
from anyrestore.archs.registry import model_meta  # noqa: E402


#: row of the switches the Predictor chooses for the device and precision (set_device_fast_paths)
DEVICE_DEFAULT = "device default"


def variants(model: torch.nn.Module) -> dict[str, dict]:
    """``{name: switch overrides}``: plain, all, and each path the model actually has, alone."""
    present = [p for p in FAST_PATHS if any(isinstance(getattr(m, p, None), bool) for m in model.modules())]
    out = {"plain": {"enabled": False}, "all": {"enabled": True}}
    if len(present) > 1:
        out.update({f"only {p}": {"enabled": False, p: True} for p in present})
    return out


def ablate(preset: str, size: int, device: torch.device, precisions: list[str], repeat: int) -> list[dict]:
    base = bench_model(preset).eval()
    multiple = max(1, int(model_meta(base).pad_multiple))
    x = bench_input(size, multiple).to(device)
    calls, outputs = {}, {}

    def add(name: str, model: torch.nn.Module, channels_last: bool, precision_list: list[str]) -> None:
        module = optimize_model(model.to(device), fast=None, channels_last=channels_last)
        for precision in precision_list:
            key = (name, "channels-last" if channels_last else "NCHW", precision)
            call = functools.partial(forward, module, x, PRECISIONS[precision], device, None, 0)
            outputs[key] = call().cpu()  # warm-up; also checks the variant is finite
            calls[key] = call

    for channels_last in (False, True):
        for name, switches in variants(base).items():
            add(name, set_fast_paths(copy.deepcopy(base), **switches), channels_last, precisions)
        for precision in precisions:  # what the Predictor picks by default here (it depends on the precision)
            add(DEVICE_DEFAULT, set_device_fast_paths(copy.deepcopy(base), device, precision), channels_last,
                [precision])
    medians = round_robin_medians(calls, repeat)
    plain = medians[("plain", "NCHW", "fp32")]
    return [{"preset": preset, "size": size, "variant": k[0], "layout": k[1], "precision": k[2], "s": s,
             "speedup_vs_plain_fp32": plain / s, "finite": bool(torch.isfinite(outputs[k]).all())}
            for k, s in medians.items()]


def render(rows: list[dict], info: dict) -> str:
    lines = [f"# Fast-path ablation — {info.get('gpu') or info['cpu']}, {info['date_utc']} UTC", "",
             f"torch {info['torch']}, torch threads {info['torch_threads']}. Time relative to the plain NCHW fp32 "
             "forward of the same cell (> 1 = faster); seconds in brackets.", ""]
    for (preset, size) in dict.fromkeys((r["preset"], r["size"]) for r in rows):
        cell = [r for r in rows if r["preset"] == preset and r["size"] == size]
        cols = list(dict.fromkeys((r["layout"], r["precision"]) for r in cell))
        header = " | ".join(f"{layout} {precision}" for layout, precision in cols)
        lines += [f"## {preset} {size}²", "", f"| variant | {header} |",
                  "|---|" + "---|" * len(cols)]
        for variant in dict.fromkeys(r["variant"] for r in cell):
            by = {(r["layout"], r["precision"]): r for r in cell if r["variant"] == variant}
            lines.append(f"| {variant} | " + " | ".join(
                f"{by[c]['speedup_vs_plain_fp32']:.2f}× ({by[c]['s'] * 1e3:.1f} ms){'' if by[c]['finite'] else ' NaN'}"
                for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="nafnet-w64,restormer,promptir,swinir-ram,retinexformer")
    p.add_argument("--sizes", default="256")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default=None, help="default fp32,fp16,bf16 on CUDA, fp32 on CPU")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 in fp32 convs and matmuls")
    p.add_argument("--out", default=None, help="folder for <name>.md and .json")
    p.add_argument("--name", default="fastpath-ablation")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    precisions = (args.precisions or ("fp32,fp16,bf16" if device.type == "cuda" else "fp32")).split(",")
    rows = []
    for preset in args.presets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"{preset} {size}² ...", flush=True)
            rows += ablate(preset, size, device, precisions, args.repeat)
    info = machine_info(device)
    text = render(rows, info)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.name}.md").write_text(text + "\n")
        (out / f"{args.name}.json").write_text(json.dumps({"machine": info, "tf32": args.tf32, "rows": rows},
                                                          indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
