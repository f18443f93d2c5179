"""Peak memory and time of whole-image vs tiled inference on a large image (CPU by default).

Each configuration runs in its own subprocess so that its peak resident set size (RSS) is measured alone.
The default model is a ~33M-parameter convolutional net that keeps full-resolution activations at its ends
(16 channels) and does its heavy work at 1/32 resolution, so a 12-megapixel image restores in a minute or two on
two cores; ``--model promptir`` (or any registered preset, random weights) measures a real backbone instead
(slow on CPU at 12 MP: use ``--megapixels 1`` or a GPU).

Usage:
    python benchmarks/tiling_memory.py                      # 12 MP: whole vs tile 512 on CPU
    python benchmarks/tiling_memory.py --skip-whole --tiles 256 512   # tiled only
    python benchmarks/tiling_memory.py --model promptir --megapixels 1 --tiles 256
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from anyrestore.archs.registry import ModelMeta


class WideConvNet(nn.Module):
    """Residual conv net: 3->16 at full resolution, pixel-unshuffle x32, wide 3x3 body, shuffle back, 16->3."""

    def __init__(self, *, stem: int = 16, width: int = 512, depth: int = 7, factor: int = 32) -> None:
        super().__init__()
        low = stem * factor * factor
        self.head = nn.Conv2d(3, stem, 3, padding=1)
        self.down = nn.PixelUnshuffle(factor)
        self.body = nn.Sequential(nn.Conv2d(low, width, 1), nn.GELU(),
                                  *[m for _ in range(depth) for m in (nn.Conv2d(width, width, 3, padding=1), nn.GELU())],
                                  nn.Conv2d(width, low, 1))
        self.up = nn.PixelShuffle(factor)
        self.tail = nn.Conv2d(stem, 3, 3, padding=1)
        self.meta = ModelMeta(pad_multiple=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.head(x))
        return x + self.tail(f + self.up(self.body(self.down(f))))


def _peak_rss_mib() -> float:
    # VmHWM starts afresh at exec; ru_maxrss would include the size of a big parent that launched this worker
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(model_name: str) -> nn.Module:
    if model_name == "wideconv":
        return WideConvNet()
    import anyrestore

    return anyrestore.build_model(model_name)


def worker(args: argparse.Namespace) -> None:
    from anyrestore.inference import Predictor

    torch.manual_seed(0)
    model = _build(args.model)
    params = sum(p.numel() for p in model.parameters())
    h = int(round(math.sqrt(args.megapixels * 1e6 * 3 / 4)))
    w = int(round(h * 4 / 3))
    g = torch.Generator().manual_seed(0)
    small = torch.rand(1, 3, max(2, h // 64), max(2, w // 64), generator=g)
    image = nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    rss_before = _peak_rss_mib()
    predictor = Predictor(model, device=args.device, tile=args.tile, overlap=32)
    start = time.perf_counter()
    out = predictor(image)
    elapsed = time.perf_counter() - start
    peak = _peak_rss_mib()
    if torch.cuda.is_available() and predictor.device.type == "cuda":
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        gpu_peak = None
    print(json.dumps({"params": params, "size": f"{w}x{h}", "tile": args.tile, "seconds": elapsed,
                      "rss_before_mib": rss_before, "peak_rss_mib": peak, "gpu_peak_mib": gpu_peak,
                      "finite": bool(torch.isfinite(out).all())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wideconv", help="'wideconv' (default) or a registered preset name")
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--tiles", type=int, nargs="+", default=[512], help="tile sizes to measure")
    parser.add_argument("--skip-whole", action="store_true", help="do not run the whole-image configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in each worker")
    parser.add_argument("--tile", type=int, default=None, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return

    configs = ([0] if not args.skip_whole else []) + args.tiles
    print(f"model {args.model}, {args.megapixels:g} MP, device {args.device}, {args.threads} threads")
    print(f"{'mode':<12} {'size':>11} {'params':>8} {'time s':>8} {'peak RSS':>10} {'GPU peak':>9}")
    for tile in configs:
        cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--megapixels", str(args.megapixels),
               "--device", args.device, "--threads", str(args.threads), "--tile", str(tile)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        mode = "whole" if tile == 0 else f"tile {tile}"
        if proc.returncode != 0:
            reason = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1]
            print(f"{mode:<12} failed: {reason}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        gpu = f"{r['gpu_peak_mib'] / 1024:.2f} GB" if r["gpu_peak_mib"] else "-"
        print(f"{mode:<12} {r['size']:>11} {r['params'] / 1e6:>7.1f}M {r['seconds']:>8.1f} "
              f"{r['peak_rss_mib'] / 1024:>7.2f} GB {gpu:>9}")


if __name__ == "__main__":
    main()
