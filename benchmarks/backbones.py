"""Forward time and peak memory of zoo presets, next to the spandrel reference implementation where one exists.

    python benchmarks/backbones.py                                  # short default: 2 presets x 256², 512²
    python benchmarks/backbones.py --presets nafnet-w64,restormer,promptir --sizes 256,512 --threads 2
    python benchmarks/backbones.py --device cuda --presets restormer --sizes 512,1024
    python benchmarks/backbones.py --device cuda --precision fp16 --presets swinir-denoise,retinexformer  # AMP

Every measurement runs in a fresh subprocess so the peak-memory numbers do not mix. CPU peak = rise of the
process's resident-set high-water mark during the timed forwards (model weights excluded); CUDA peak =
``torch.cuda.max_memory_allocated`` minus the memory held before the forward. Time = median of ``--repeat`` runs
after one warm-up, eval, ``torch.inference_mode``, fp32 or ``--precision`` autocast for both sides. Weights are
random (speed does not depend on them).
The reference columns need the test-only ``spandrel`` / ``spandrel_extra_arches`` packages; without them they
read ``-``. ``time ratio`` here = our time / reference time (lower = faster). The whole performance suite (fast vs
plain paths, max |Δ|, extras, markdown + JSON) is ``python -m benchmarks.run``, which reports the inverse,
speed-up = reference time / our time.
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

from anyrestore.testing import stub_torchvision

DEFAULT_PRESETS = "nafnet-default,nafnet-w32"
DEFAULT_SIZES = "256,512"


def reference_model(model, size: int | None = None):
    """The spandrel module equivalent to ``model`` (same state dict) on ``size``² inputs, or None."""
    from anyrestore.errors import AnyRestoreError

    stub_torchvision()
    kw = model.arch_kwargs
    if model.arch_name == "nafnet_local" and size is not None and size > 1.5 * min(model.train_size):
        return None  # TLC's local pooling is active there: spandrel's (global-pooling) NAFNet is another function
    try:
        if model.arch_name in ("nafnet", "nafnet_local") and kw.get("ln_eps", 1e-6) == 1e-6:
            from spandrel.architectures.NAFNet import NAFNet

            ref = NAFNet(img_channel=kw.get("in_channels", 3), width=kw.get("width", 64),
                         middle_blk_num=kw.get("middle_blocks", 1),
                         enc_blk_nums=list(kw.get("enc_blocks", [1, 1, 1, 28])),
                         dec_blk_nums=list(kw.get("dec_blocks", [1, 1, 1, 1])))
        elif model.arch_name == "restormer" and kw.get("layernorm", "WithBias") != "torch":
            from spandrel_extra_arches.architectures.Restormer import Restormer

            ref = Restormer(inp_channels=3, out_channels=3, dim=kw.get("dim", 48),
                            num_blocks=list(kw.get("num_blocks", [4, 6, 6, 8])),
                            num_refinement_blocks=kw.get("num_refinement_blocks", 4),
                            heads=list(kw.get("heads", [1, 2, 4, 8])),
                            ffn_expansion_factor=kw.get("ffn_expansion_factor", 2.66), bias=kw.get("bias", False),
                            LayerNorm_type=kw.get("layernorm", "WithBias"), dual_pixel_task=False)
        elif model.arch_name in ("swinir", "retinexformer"):
            # spandrel detects these from our official-layout export and builds its own module from the keys
            from spandrel import ModelLoader

            from anyrestore.checkpoints import export_state_dict

            return ModelLoader().load_from_state_dict(export_state_dict(model, "official")).model
        else:
            return None
    except (ImportError, AnyRestoreError):  # no spandrel, or a config the official layout cannot express
        return None
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set in MiB.

    Read from ``VmHWM``, which starts afresh at ``exec``: ``ru_maxrss`` does not, so a subprocess started by a
    big parent would report the parent's size as its own peak.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no VmHWM: KiB on Linux


def sync(device: str) -> None:
    """Wait for queued CUDA work so wall-clock timers measure it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, precision: str):
    """``torch.autocast`` for fp16/bf16 on ``device``; a no-op context for fp32."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def child(preset: str, impl: str, size: int, repeat: int, device: str, threads: int,
          precision: str = "fp32") -> dict:
    """``impl`` ``ours``/``spandrel``: peak memory of one forward; ``time``: interleaved timing of ours and the
    reference (when one exists); ``time-ours``: timing of ours only."""
    import torch

    torch.set_num_threads(threads)
    from anyrestore.archs import build_model

    ours = build_model(preset).eval()
    models = {"ours": ours}
    if impl in ("spandrel", "time"):
        ref = reference_model(ours, size)
        if ref is not None:
            models["spandrel"] = ref.eval()
    if impl == "spandrel":
        models = {"spandrel": models["spandrel"]} if "spandrel" in models else {}
    if not models:
        return {}
    models = {name: m.to(device) for name, m in models.items()}
    params = sum(p.numel() for p in ours.parameters())
    x = torch.rand(1, 3, size, size, device=device)  # sizes are multiples of 16: no reference needs padding
    with torch.inference_mode(), autocast(device, precision):
        for m in models.values():
            m(x)
        sync(device)
        if impl.startswith("time"):
            times: dict[str, list[float]] = {name: [] for name in models}
            for _ in range(repeat):
                for name, m in models.items():
                    start = time.perf_counter()
                    m(x)
                    sync(device)
                    times[name].append(time.perf_counter() - start)
            return {"params": params, **{f"{name}_s": statistics.median(t) for name, t in times.items()}}
        (model,) = models.values()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = rss_mb()
        model(x)
        sync(device)
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = peak_rss_mb() - base
    return {"params": params, "peak_mb": max(peak, 0.0)}


def measure(preset: str, impl: str, size: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", preset, impl, str(size), "--repeat", str(args.repeat),
           "--device", args.device, "--threads", str(args.threads), "--precision", args.precision]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=DEFAULT_PRESETS,
                        help=f"comma-separated presets (default {DEFAULT_PRESETS})")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"square input sizes (default {DEFAULT_SIZES})")
    parser.add_argument("--repeat", type=int, default=2, help="timed forwards per cell (median; default 2)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="autocast precision for ours and the reference alike (default fp32; fp16/bf16 = AMP)")
    parser.add_argument("--no-reference", action="store_true", help="skip the spandrel columns")
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "IMPL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        preset, impl, size = args.child
        print(json.dumps(child(preset, impl, int(size), args.repeat, args.device, args.threads, args.precision)))
        return 0

    print(f"device {args.device}, {args.threads} threads, {args.precision}, median of {args.repeat} after 1 warm-up")
    header = (f"{'preset':<20} {'params':>11} {'size':>6} {'ours s':>8} {'s/MP':>6} {'ours MB':>8} "
              f"{'spandrel s':>10} {'spandrel MB':>11} {'time ratio':>10}")
    print(header)
    print("-" * len(header))
    for preset in [p for p in args.presets.split(",") if p]:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            timing = measure(preset, "time-ours" if args.no_reference else "time", size, args)
            if "error" in timing:
                print(f"{preset:<20} {'':>11} {size:>6} error: {timing['error']}", flush=True)
                continue
            mem = measure(preset, "ours", size, args)
            has_ref = "spandrel_s" in timing
            ref_mem = measure(preset, "spandrel", size, args) if has_ref else {}
            mp = size * size / 1e6
            ref_s = f"{timing['spandrel_s']:.3f}" if has_ref else "-"
            ref_mb = f"{ref_mem['peak_mb']:.0f}" if ref_mem.get("peak_mb") is not None else "-"
            ratio = f"{timing['ours_s'] / timing['spandrel_s']:.2f}" if has_ref else "-"
            print(f"{preset:<20} {timing['params']:>11,} {size:>6} {timing['ours_s']:>8.3f} "
                  f"{timing['ours_s'] / mp:>6.2f} {mem.get('peak_mb', float('nan')):>8.0f} {ref_s:>10} {ref_mb:>11} "
                  f"{ratio:>10}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
