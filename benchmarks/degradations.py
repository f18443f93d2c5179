"""Throughput of every degradation type on CPU (or another device): megapixels per second.

    python benchmarks/degradations.py                      # batch 16 x 128², every type at its "medium" level
    python benchmarks/degradations.py --batch 8 --size 512 --repeats 5 --threads 2 --device cpu
    python benchmarks/degradations.py --specs default-model unirestorer-in ram-official-code

A "megapixel" is one million H×W positions (all three channels). Each spec is run once to warm up, then timed
``--repeats`` times with a fresh seed each time; the median is reported, as wall-clock time and as process CPU
time. On a shared, loaded machine the CPU time of a single-threaded run (``--threads 1``) is the better estimate
of what one idle core delivers; with N threads, wall time is the figure that counts.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from anyrestore.degradations import build_sampler, list_types


def measure(spec: str, clean: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) of one sampler call on ``clean``."""
    sampler = build_sampler(spec)
    sampler(clean, torch.Generator().manual_seed(0))
    wall, cpu = [], []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        sampler(clean, gen)
        if clean.device.type == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--level", default="medium", help="level used for single types (default medium)")
    parser.add_argument("--specs", nargs="*", default=None, help="specs to time (default: every type + presets)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = args.specs or ([f"{t}:{args.level}" for t in list_types() if t != "identity"]
                           + ["noise", "blur", "jpeg", "ram-official-code", "default-model", "unirestorer-in"])
    clean = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    clean = clean.to(args.device)
    mpx = args.batch * args.size * args.size / 1e6
    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch} x {args.size}², "
          f"median of {args.repeats}")
    print(f"| {'spec':<26} | {'wall ms':>8} | {'Mpx/s wall':>10} | {'CPU ms':>8} | {'Mpx/s per CPU-s':>15} |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 12}|{'-' * 10}|{'-' * 17}|")
    for spec in specs:
        wall, cpu = measure(spec, clean, args.repeats)
        print(f"| {spec:<26} | {wall * 1e3:>8.1f} | {mpx / wall:>10.1f} | {cpu * 1e3:>8.1f} | {mpx / max(cpu, 1e-9):>15.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
