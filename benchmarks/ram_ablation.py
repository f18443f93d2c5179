"""Small-scale RAM ablation on CPU (paper Tables 1, 5 and 6 in miniature). Prints paper-like tables.

    python benchmarks/ram_ablation.py --quick          # ~1 min: proves the pipeline, numbers are noise
    python benchmarks/ram_ablation.py                  # default, ~15-25 min on 2 CPU cores
    python benchmarks/ram_ablation.py --pretrain-iters 3000 --finetune-iters 800 --seeds 0 1 2

A small backbone (default ``swinir-ram-tiny``) is trained through the real engine (``anyrestore.engine.trainer``)
on 7 synthetic tasks built from the photographs shipped with the installed packages: haze, rain, low light,
Gaussian noise, motion blur, Gaussian blur, JPEG (noise / blur / JPEG with RAM's official-code ranges). It is
tested on the held-out ``chelsea`` photo and on procedural dead-leaves images, each degraded with fixed seeds.

(a) RAM (mask pre-training P iterations + MAC + fine-tuning 10 % of the layers F iterations) vs plain supervised
    training of the whole network for P + F iterations;
(b) the 10 % fine-tuning with MAC, IG and random layer rankings (same pre-trained weights);
(c) fine-tuning 10 / 30 / 100 % of the layers (MAC ranking): in-distribution average vs out-of-distribution
    noise (Poisson, salt & pepper, speckle; "medium" level), as in Table 6.

All runs use explicit seeds (printed). The synthetic tasks and sizes are far from the paper's setting: read the
numbers as a check of the mechanics and of orderings, not as a reproduction.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anyrestore.checkpoints import save_model  # noqa: E402
from anyrestore.degradations import build_sampler  # noqa: E402
from anyrestore.degradations.catalog import RAM_TRAIN  # noqa: E402
from anyrestore.engine.config import config_from_dict  # noqa: E402
from anyrestore.engine.trainer import Trainer  # noqa: E402
from anyrestore.inference.predictor import Predictor  # noqa: E402
from anyrestore.methods.ram.finetune import read_ranking, write_ranking  # noqa: E402
from anyrestore.methods.ram.mac import MacSettings, rank_layers  # noqa: E402
from anyrestore.methods.ram.mac_data import synthetic_images  # noqa: E402
from anyrestore.metrics import psnr  # noqa: E402

TASKS = ("haze", "rain", "low_light", "noise", "motion_blur", "blur", "jpeg")
OOD = {"Poisson": "poisson:medium", "S&P": "salt_pepper:medium", "Speckle": "speckle:medium"}


def task_degradation(task: str):
    official = RAM_TRAIN["official-code"]
    return {"type": task, **official[task]} if task in official else task


def train_tree(name: str, *, model: str, objective: dict, iterations: int, lr: float, eta_min: float, warmup: int,
               args: argparse.Namespace, seed: int, out: Path, pretrained: str | None = None,
               ema: float | None = None) -> dict:
    streams = [{"type": "synthetic", "name": task, "source": {"type": "shipped"},
                "degradation": task_degradation(task)} for task in TASKS]
    model_cfg = {"name": model}
    if pretrained:
        model_cfg.update({"pretrained": pretrained, "param_key": "params"})
    return {
        "name": name, "seed": seed, "output_dir": str(out), "model": model_cfg, "objective": objective,
        "data": {"streams": streams, "batch_size": args.batch, "crop": args.crop, "augment": "hflip",
                 "epoch_length": 7 * 64},
        "optim": {"type": "adam", "lr": lr, "betas": [0.9, 0.99]},
        "schedule": {"type": "cosine", "warmup": warmup, "eta_min": eta_min},
        "train": {"iterations": iterations, "ema_decay": ema, "log_every": max(1, iterations // 5),
                  "device": "cpu", "progress": False, "tensorboard": False},
    }


def train(tree: dict, out: Path) -> Trainer:
    trainer = Trainer(config_from_dict(tree), run_dir=out / tree["name"])
    trainer.fit()
    return trainer


def test_set(args: argparse.Namespace) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clean held-out crops (chelsea + dead leaves) and their degraded versions per task / OOD type."""
    from anyrestore.data.sources import DeadLeaves, shipped_photo_paths
    from anyrestore.data.datasets import read_image

    g = torch.Generator().manual_seed(1234)
    size = args.test_crop
    chelsea = [p for p in shipped_photo_paths(exclude=()) if p.name == "chelsea.png"]
    clean = []
    if chelsea:
        img = read_image(chelsea[0])
        for _ in range(args.test_images):
            top = int(torch.randint(0, img.shape[1] - size + 1, (), generator=g))
            left = int(torch.randint(0, img.shape[2] - size + 1, (), generator=g))
            clean.append(img[:, top:top + size, left:left + size])
    leaves = DeadLeaves(size=size)
    clean += [leaves.generate(10_000 + i) for i in range(args.test_images)]
    clean = torch.stack(clean)
    degraded = {}
    for i, (name, spec) in enumerate([(t, task_degradation(t)) for t in TASKS] + list(OOD.items())):
        lq, _ = build_sampler(spec)(clean, seeds=[777 * (i + 1) + j for j in range(len(clean))])
        degraded[name] = lq.clamp(0, 1)
    return clean, degraded


def evaluate(model: torch.nn.Module, clean: torch.Tensor, degraded: dict[str, torch.Tensor]) -> dict[str, float]:
    predictor = Predictor(model, device="cpu", tile=0)
    scores = {}
    with torch.no_grad():
        for name, lq in degraded.items():
            out = predictor(lq)
            scores[name] = statistics.fmean(psnr(o.permute(1, 2, 0).numpy(), c.permute(1, 2, 0).numpy())
                                            for o, c in zip(out, clean))
    return scores


def id_avg(s: dict[str, float]) -> float:
    return statistics.fmean(s[t] for t in TASKS)


def ood_avg(s: dict[str, float]) -> float:
    return statistics.fmean(s[t] for t in OOD)


def run_seed(seed: int, args: argparse.Namespace, out: Path, clean, degraded) -> dict:
    torch.manual_seed(seed)
    p_it, f_it = args.pretrain_iters, args.finetune_iters
    results: dict = {"rows": {}, "info": {}}
    t0 = time.time()
    pre = train(train_tree("pretrain", model=args.model, objective={"type": "ram_pretrain", "mask_ratio": 0.5},
                           iterations=p_it, lr=args.lr, eta_min=args.lr * 0.6, warmup=min(10, p_it // 4),
                           args=args, seed=seed, out=out, ema=0.995), out)
    weights = save_model(pre.model, out / "pretrain_params.safetensors")  # D16: MAC and fine-tuning use params
    results["info"]["pretrain_s"] = time.time() - t0
    mac_data = synthetic_images("shipped", preset="official-code", count=args.mac_images, crop=args.crop, seed=seed)
    images, tasks = [im.image for im in mac_data.images], [im.task for im in mac_data.images]
    rankings = {}
    for method in ("mac", "ig", "random"):
        t1 = time.time()
        analysis = rank_layers(pre.model, images, tasks=tasks, settings=MacSettings(
            method=method, total_step=args.mac_steps, seed=seed, batch_size=len(images)))
        write_ranking(analysis.ranking, out / f"rank_{method}", extra=analysis.json_extra())
        rankings[method] = out / f"rank_{method}"
        results["info"][f"{method}_s"] = time.time() - t1
    results["info"]["mac_top3"] = read_ranking(rankings["mac"]).names[:3]
    runs = [("MAC 10%", "mac", 0.1), ("IG 10%", "ig", 0.1), ("random 10%", "random", 0.1),
            ("MAC 30%", "mac", 0.3), ("MAC 100%", "mac", 1.0)]
    for label, method, ratio in runs:
        t1 = time.time()
        objective = {"type": "ram_finetune", "ranking": str(rankings[method]), "ratio": ratio}
        ft = train(train_tree(f"ft_{method}_{int(ratio * 100)}", model=args.model, objective=objective,
                              iterations=f_it, lr=args.ft_lr, eta_min=1e-7, warmup=min(10, f_it // 4), args=args,
                              seed=seed, out=out, pretrained=str(weights)), out)
        report = ft.objective.report
        results["rows"][label] = {**evaluate(ft.model, clean, degraded), "layers": report.trainable_layers,
                                  "num_layers": report.num_layers, "share": report.param_share,
                                  "seconds": time.time() - t1}
    t1 = time.time()
    sup = train(train_tree("supervised", model=args.model, objective={"type": "l1"}, iterations=p_it + f_it,
                           lr=args.lr, eta_min=1e-7, warmup=min(10, p_it // 4), args=args, seed=seed, out=out), out)
    results["rows"]["supervised"] = {**evaluate(sup.model, clean, degraded), "seconds": time.time() - t1}
    results["rows"]["pretrain only"] = evaluate(pre.model, clean, degraded)
    return results


def mean_rows(per_seed: list[dict]) -> dict[str, dict[str, float]]:
    rows = {}
    for label in per_seed[0]["rows"]:
        keys = [k for k, v in per_seed[0]["rows"][label].items() if isinstance(v, (int, float))]
        rows[label] = {k: statistics.fmean(r["rows"][label][k] for r in per_seed) for k in keys}
    return rows


def print_tables(rows: dict, args: argparse.Namespace, seeds: list[int], per_seed: list[dict]) -> None:
    p, f = args.pretrain_iters, args.finetune_iters
    short = {"haze": "Haze", "rain": "Rain", "low_light": "Low", "noise": "Noise", "motion_blur": "Motion",
             "blur": "Blur", "jpeg": "JPEG"}
    print(f"\nRAM ablation: model {args.model}, crop {args.crop}, batch {args.batch}, pre-train {p} it, "
          f"fine-tune {f} it, MAC {args.mac_steps} steps x {args.mac_images} img/task, seeds {seeds}")
    print(f"test: {2 * args.test_images} held-out crops {args.test_crop}x{args.test_crop} per task (PSNR dB, RGB, "
          f"basicsr protocol), mean over seeds\n")
    print("(a) RAM vs plain supervised training at the same total iterations")
    print("| Method | iters | " + " | ".join(short[t] for t in TASKS) + " | Avg |")
    print("|---|---|" + "---|" * (len(TASKS) + 1))
    for label, iters in (("supervised", p + f), ("pretrain only", p), ("MAC 10%", p + f)):
        r = rows[label]
        name = "RAM (pre-train + MAC 10 %)" if label == "MAC 10%" else label
        print(f"| {name} | {iters} | " + " | ".join(f"{r[t]:.2f}" for t in TASKS) + f" | {id_avg(r):.2f} |")
    print("\n(b) layer selection at 10 % (paper Table 5)")
    print("| Ranking | layers | params trained | Avg PSNR |")
    print("|---|---|---|---|")
    for label in ("random 10%", "IG 10%", "MAC 10%"):
        r = rows[label]
        print(f"| {label.split()[0]} | {r['layers']:.0f}/{r['num_layers']:.0f} | {100 * r['share']:.1f} % | "
              f"{id_avg(r):.2f} |")
    print("\n(c) fine-tuned share vs out-of-distribution noise (paper Table 6)")
    print("| Model | " + " | ".join(OOD) + " | OOD avg | In-dist. avg |")
    print("|---|" + "---|" * (len(OOD) + 2))
    for label in ("supervised", "MAC 10%", "MAC 30%", "MAC 100%"):
        r = rows[label]
        print(f"| {label} | " + " | ".join(f"{r[k]:.2f}" for k in OOD) + f" | {ood_avg(r):.2f} | {id_avg(r):.2f} |")
    for seed, res in zip(seeds, per_seed):
        info = res["info"]
        print(f"\nseed {seed}: pre-train {info['pretrain_s']:.0f} s, MAC {info['mac_s']:.0f} s, IG {info['ig_s']:.0f} s;"
              f" MAC top-3 layers: {', '.join(info['mac_top3'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run that only proves the pipeline (~1 min)")
    parser.add_argument("--model", default="swinir-ram-tiny")
    parser.add_argument("--pretrain-iters", type=int, default=500)
    parser.add_argument("--finetune-iters", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3, help="pre-training / supervised peak LR")
    parser.add_argument("--ft-lr", type=float, default=5e-4, help="fine-tuning peak LR")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--mac-steps", type=int, default=40)
    parser.add_argument("--mac-images", type=int, default=2, help="MAC images per task")
    parser.add_argument("--test-images", type=int, default=4, help="chelsea crops and dead-leaves images per task")
    parser.add_argument("--test-crop", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="keep run folders here (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_iters, args.finetune_iters, args.mac_steps = 20, 10, 4
        args.mac_images, args.test_images, args.test_crop = 1, 1, 32
    torch.set_num_threads(args.threads)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="ram_ablation_") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        clean, degraded = test_set(args)
        per_seed = [run_seed(seed, args, root / f"seed{seed}", clean, degraded) for seed in args.seeds]
    print_tables(mean_rows(per_seed), args, args.seeds, per_seed)
    print(f"\ntotal {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
