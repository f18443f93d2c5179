"""Throughput of every degradation type on CPU (or another device): megapixels per second.

    python benchmarks/degradations.py                      # batch 16 x 128², every type at its "medium" level
    python benchmarks/degradations.py --batch 8 --size 512 --repeats 5 --threads 2 --device cpu
    python benchmarks/degradations.py --specs default-model unirestorer-in ram-official-code

A "megapixel" is one million H×W positions (all three channels). Each spec is run once to warm up, then timed
``--repeats`` times with a fresh seed each time; the median is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from anyrestore.degradations import build_sampler, list_types


def measure(spec: str, clean: torch.Tensor, repeats: int) -> float:
    sampler = build_sampler(spec)
    sampler(clean, torch.Generator().manual_seed(0))
    times = []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r + 1)
        t0 = time.perf_counter()
        sampler(clean, gen)
        if clean.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    print(f"| {'spec':<26} | {'ms / batch':>10} | {'Mpx/s':>8} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 10}|")
    for spec in specs:
        sec = measure(spec, clean, args.repeats)
        print(f"| {spec:<26} | {sec * 1e3:>10.1f} | {mpx / sec:>8.1f} |", flush=True)


if __name__ == "__main__":
    main()
