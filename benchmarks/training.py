"""Training throughput on this machine: data pipeline alone, model step alone, and the full trainer.

    python benchmarks/training.py                                   # nafnet-tiny smoke recipe, a few seconds
    python benchmarks/training.py --recipe configs/tiny/default-model-cpu.yaml --iterations 20 --workers 2
    python benchmarks/training.py --recipe configs/tiny/default-model-cpu.yaml train.channels_last=true
    python benchmarks/training.py --recipe configs/default/full_balanced.yaml --parts data --iterations 100

Prints iterations/s and samples/s for each part and the data/model time ratio (> 1: the data pipeline is the
bottleneck and more loader workers or a cheaper source help; < 1: the model is).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def time_data(cfg, iterations: int) -> float:
    from torch.utils.data import DataLoader

    from anyrestore.engine.builders import build_train_data
    from anyrestore.engine.distributed import DistInfo

    dataset, sampler, kwargs = build_train_data(cfg, DistInfo())
    start = time.perf_counter()
    for stream in dataset.streams:  # cached pools are filled once per run: start-up, not throughput
        if hasattr(getattr(stream, "source", None), "fill"):
            stream.source.fill()
    print(f"source cache fill: {time.perf_counter() - start:.1f} s")
    def batches():  # epoch after epoch, as the trainer draws them
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from DataLoader(dataset, sampler=sampler, drop_last=True, **kwargs)
            epoch += 1

    loader = batches()
    next(loader)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(iterations):
        next(loader)
    return (time.perf_counter() - start) / iterations


def time_model(cfg, iterations: int, device: str = "cpu") -> float:
    """Seconds per optimizer step (forward, loss, backward, Adam) of the recipe's model on a fixed random batch."""
    from anyrestore.archs.registry import build_model
    from anyrestore.engine.objectives import build_objective

    model = build_model(cfg.model.name, **cfg.model.kwargs).to(device).train()
    layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    objective = build_objective(cfg.objective)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    b, c = cfg.data.batch_size, cfg.data.crop
    lq, gt = (torch.rand(b, 3, c, c, generator=gen).to(device).contiguous(memory_format=layout) for _ in range(2))
    batch = {"lq": lq, "gt": gt,
             "class_index": torch.zeros(b, dtype=torch.long, device=device), "labels": [{}] * b, "iteration": 1,
             "generator": torch.Generator(device=device).manual_seed(1)}

    def step():
        optimizer.zero_grad(set_to_none=True)
        objective(model, batch)["loss"].backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations


def time_trainer(cfg, iterations: int) -> float:
    from anyrestore.engine.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, run_dir=tmp)
        trainer.setup()
        for stream in trainer.dataset.streams:
            if hasattr(getattr(stream, "source", None), "fill"):
                stream.source.fill()
        trainer.fit(stop_at=1)
        start = time.perf_counter()
        trainer.fit(stop_at=1 + iterations)
        return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(REPO / "configs" / "tiny" / "smoke.yaml"))
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop", type=int)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--parts", default="data,model,trainer",
                        help="comma-separated parts to time: data, model, trainer (default all three)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides key.sub=value")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - {"data", "model", "trainer"}:
        parser.error(f"--parts takes data, model and/or trainer, got {args.parts!r}")
    torch.set_num_threads(args.threads)
    from anyrestore.engine.config import load_config

    overrides = [f"data.num_workers={args.workers}", "train.progress=false", "train.tensorboard=false", "val.every=0",
                 "train.ckpt_every=0", "train.log_every=1000000", *args.overrides]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    if args.crop:
        overrides.append(f"data.crop={args.crop}")
    cfg = load_config(args.recipe, overrides)
    cfg.train.iterations = 10**9  # the schedule length does not matter here
    b = cfg.data.batch_size
    timers = {"data": ("data pipeline alone", time_data), "model": ("model step alone", time_model),
              "trainer": ("full trainer", time_trainer)}
    seconds = {part: timers[part][1](cfg, args.iterations) for part in parts}
    print(f"recipe {Path(args.recipe).name}: model {cfg.model.name}, batch {b}, crop {cfg.data.crop}, "
          f"workers {args.workers}, threads {args.threads}, device cpu, {args.iterations} timed iterations")
    print("| part | s/iteration | iterations/s | samples/s |")
    print("|---|---|---|---|")
    for part, sec in seconds.items():
        print(f"| {timers[part][0]} | {sec:.4f} | {1 / sec:.2f} | {b / sec:.1f} |")
    if "data" in seconds and "model" in seconds:
        data_s, model_s = seconds["data"], seconds["model"]
        print(f"data/model time ratio: {data_s / model_s:.2f} "
              f"({'data-bound' if data_s > model_s else 'model-bound'} with {args.workers} workers)")


if __name__ == "__main__":
    main()
