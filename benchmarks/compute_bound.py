"""How close a backbone's forward runs to the machine's matrix-multiply peak: what bounds a speed-up.

    python benchmarks/compute_bound.py                                   # nafnet-w64 at 256², 2 threads
    python benchmarks/compute_bound.py --presets nafnet-w64,restormer --size 256 --threads 2 --repeat 7

For each preset: the forward's floating-point operations (``torch.utils.flop_counter``, convolutions and matrix
products), the machine's sustained fp32 GEMM rate (a 4096³ ``torch.mm``, median of 3), and the time of our
forward (fast paths, channels-last) and of the spandrel reference (same weights, same process, timed
round-robin), each turned into GFLOP/s and a fraction of that GEMM peak. A network whose reference already runs
near the peak cannot be made much faster by exact rewrites: the floor is FLOPs / peak. Per-layer rows show where
the time goes (``--layers N``: convolution shapes timed by forward hooks, which the NAFNet fast path keeps off
``conv3``/``conv5``: those two run unfolded in that pass).
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def gemm_peak(threads: int, n: int = 4096, repeat: int = 3) -> float:
    """Sustained fp32 GEMM rate in GFLOP/s (median of ``repeat`` n³ products)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


def layer_table(model: torch.nn.Module, x: torch.Tensor, peak: float, top: int) -> list[str]:
    """The ``top`` convolution shapes by total time (timed by forward hooks), with their GFLOP/s."""
    stats: dict[tuple, list[float]] = {}  # shape key -> [seconds, flops, calls]
    started: dict[int, float] = {}

    def before(module, args):
        started[id(module)] = time.perf_counter()

    def after(module, args, out):
        seconds = time.perf_counter() - started.pop(id(module))
        w = module.weight
        flops = 2 * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
        key = (tuple(args[0].shape), tuple(w.shape), module.groups, module.stride)
        entry = stats.setdefault(key, [0.0, 0, 0])
        entry[0] += seconds
        entry[1] += flops
        entry[2] += 1

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(x)
        handles = [h for m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
    total = sum(v[0] for v in stats.values())
    lines = ["| input | weight | groups | stride | calls | total s | share of conv time | GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (inp, weight, groups, stride), (seconds, flops, calls) in sorted(stats.items(), key=lambda kv: -kv[1][0])[:top]:
        rate = flops / seconds / 1e9
        lines.append(f"| {'x'.join(map(str, inp))} | {'x'.join(map(str, weight))} | {groups} | {stride[0]} | {calls} | "
                     f"{seconds:.3f} | {seconds / total:.0%} | {rate:.0f} | {rate / peak:.0%} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="nafnet-w64", help="comma-separated presets (default nafnet-w64)")
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=7, help="timed forwards per implementation (default 7)")
    parser.add_argument("--layers", type=int, default=0, help="also list the N most expensive convolution shapes")
    args = parser.parse_args(argv)

    from anyrestore.archs import build_model
    from anyrestore.archs.fastpaths import optimize_model
    from benchmarks.backbones import reference_model
    from benchmarks.run import round_robin_medians

    torch.set_num_threads(args.threads)
    peak = gemm_peak(args.threads)
    print(f"fp32 GEMM peak (4096³ torch.mm, {args.threads} threads): {peak:.0f} GFLOP/s\n")
    print("| preset | size | GFLOP | ours s | ours GFLOP/s | ours of peak | ref s | ref GFLOP/s | ref of peak | "
          "speed-up | floor s (FLOP/peak) | best possible speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    layer_sections = []
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        model = build_model(preset).eval()
        ref = reference_model(model, args.size)
        if ref is not None:
            ref.load_state_dict(model.state_dict(), strict=False)
            ref.eval()
        flops = forward_flops(model, x)
        ours = optimize_model(model, fast=True, channels_last=True)
        impls = {"ours": ours} | ({"ref": ref} if ref is not None else {})
        with torch.inference_mode():
            for impl in impls.values():  # warm-up
                impl(x)
            t = round_robin_medians({name: functools.partial(impl, x) for name, impl in impls.items()}, args.repeat)
        floor = flops / (peak * 1e9)
        rate = {k: flops / v / 1e9 for k, v in t.items()}
        ref_cells = (f"{t['ref']:.3f} | {rate['ref']:.0f} | {rate['ref'] / peak:.0%} | {t['ref'] / t['ours']:.2f}"
                     if "ref" in t else "- | - | - | -")
        best = f"{t['ref'] / floor:.2f}" if "ref" in t else "-"
        print(f"| {preset} | {args.size}² | {flops / 1e9:.1f} | {t['ours']:.3f} | {rate['ours']:.0f} | "
              f"{rate['ours'] / peak:.0%} | {ref_cells} | {floor:.3f} | {best} |", flush=True)
        if args.layers:
            layer_sections.append((preset, layer_table(ours, x, peak, args.layers)))
    for preset, lines in layer_sections:
        print(f"\n{preset}: most expensive convolution shapes (ours)\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
