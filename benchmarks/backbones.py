"""Forward time and peak memory of zoo presets, next to the spandrel reference implementation where one exists.

    python benchmarks/backbones.py                                  # short default: 2 presets x 256², 512²
    python benchmarks/backbones.py --presets nafnet-w64,restormer,promptir --sizes 256,512 --threads 2
    python benchmarks/backbones.py --device cuda --presets restormer --sizes 512,1024

Every measurement runs in a fresh subprocess so the peak-memory numbers do not mix. CPU peak = rise of the
process's resident-set high-water mark during the timed forwards (model weights excluded); CUDA peak =
``torch.cuda.max_memory_allocated`` minus the memory held before the forward. Time = median of ``--repeat`` runs
after one warm-up, fp32, eval, ``torch.inference_mode``. Weights are random (speed does not depend on them).
The reference columns need the test-only ``spandrel`` / ``spandrel_extra_arches`` packages; without them they
read ``-``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

DEFAULT_PRESETS = "nafnet-default,nafnet-w32"
DEFAULT_SIZES = "256,512"


def _stub_torchvision() -> None:
    # spandrel imports torchvision at import time for architectures we never build (backbones.md §9.1)
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stub")

    tv, tr, fn = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms",
                                                 "torchvision.transforms.functional"))
    fn.InterpolationMode = type("InterpolationMode", (), {"BILINEAR": 2, "NEAREST": 0, "BICUBIC": 3})
    fn.rotate = fn.normalize = unavailable
    tr.functional, tv.transforms = fn, tr
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})


def reference_model(model):
    """The spandrel module equivalent to ``model`` (same state dict), or None."""
    _stub_torchvision()
    kw = model.arch_kwargs
    try:
        if model.arch_name in ("nafnet", "nafnet_local") and kw.get("ln_eps", 1e-6) == 1e-6:
            from spandrel.architectures.NAFNet import NAFNet

            ref = NAFNet(img_channel=kw.get("in_channels", 3), width=kw.get("width", 64),
                         middle_blk_num=kw.get("middle_blocks", 1), enc_blk_nums=list(kw.get("enc_blocks", [1, 1, 1, 28])),
                         dec_blk_nums=list(kw.get("dec_blocks", [1, 1, 1, 1])))
        elif model.arch_name == "restormer" and kw.get("layernorm", "WithBias") != "torch":
            from spandrel_extra_arches.architectures.Restormer import Restormer

            ref = Restormer(inp_channels=3, out_channels=3, dim=kw.get("dim", 48),
                            num_blocks=list(kw.get("num_blocks", [4, 6, 6, 8])),
                            num_refinement_blocks=kw.get("num_refinement_blocks", 4),
                            heads=list(kw.get("heads", [1, 2, 4, 8])),
                            ffn_expansion_factor=kw.get("ffn_expansion_factor", 2.66), bias=kw.get("bias", False),
                            LayerNorm_type=kw.get("layernorm", "WithBias"), dual_pixel_task=False)
        else:
            return None
    except ImportError:
        return None
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(preset: str, impl: str, size: int, repeat: int, device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from anyrestore.archs import build_model

    model = build_model(preset)
    if impl == "spandrel":
        model = reference_model(model)
        if model is None:
            return {}
    model = model.eval().to(device)
    # the reference NAFNet pads internally; Restormer needs multiples of 8: sizes here are multiples of 16
    x = torch.rand(1, 3, size, size, device=device)
    with torch.inference_mode():
        model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_mb()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base  # ru_maxrss is in KiB on Linux
    return {"time_s": statistics.median(times), "peak_mb": max(peak, 0.0),
            "params": sum(p.numel() for p in model.parameters())}


def measure(preset: str, impl: str, size: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", preset, impl, str(size), "--repeat", str(args.repeat),
           "--device", args.device, "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=DEFAULT_PRESETS, help=f"comma-separated presets (default {DEFAULT_PRESETS})")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"square input sizes (default {DEFAULT_SIZES})")
    parser.add_argument("--repeat", type=int, default=2, help="timed forwards per cell (median; default 2)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--no-reference", action="store_true", help="skip the spandrel columns")
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "IMPL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        preset, impl, size = args.child
        print(json.dumps(child(preset, impl, int(size), args.repeat, args.device, args.threads)))
        return 0

    print(f"device {args.device}, {args.threads} threads, fp32, median of {args.repeat} after 1 warm-up")
    header = (f"{'preset':<20} {'params':>11} {'size':>6} {'ours s':>8} {'s/MP':>6} {'ours MB':>8} "
              f"{'spandrel s':>10} {'spandrel MB':>11} {'time ratio':>10}")
    print(header)
    print("-" * len(header))
    for preset in [p for p in args.presets.split(",") if p]:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            ours = measure(preset, "ours", size, args)
            if "error" in ours:
                print(f"{preset:<20} {'':>11} {size:>6} error: {ours['error']}")
                continue
            ref = {} if args.no_reference else measure(preset, "spandrel", size, args)
            ref_ok = bool(ref) and "error" not in ref
            mp = size * size / 1e6
            ref_s = f"{ref['time_s']:.3f}" if ref_ok else "-"
            ref_mb = f"{ref['peak_mb']:.0f}" if ref_ok else "-"
            ratio = f"{ours['time_s'] / ref['time_s']:.2f}" if ref_ok else "-"
            print(f"{preset:<20} {ours['params']:>11,} {size:>6} {ours['time_s']:>8.3f} {ours['time_s'] / mp:>6.2f} "
                  f"{ours['peak_mb']:>8.0f} {ref_s:>10} {ref_mb:>11} {ratio:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
