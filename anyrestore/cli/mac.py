"""`anyrestore mac --model PATH|NAME --data SPEC -o DIR`: rank a model's layers for RAM selective fine-tuning.

Writes the official three-file ranking (``filter_name.txt``, ``filter_index.txt``, ``filter_cond.txt``),
``ranking.json`` (settings, weights hash, images and degradations, per-task scores) and ``ranking.png`` (bar chart
of the top layers) into DIR. The ranking directory is the ``ranking:`` input of the ``ram_finetune`` objective.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DATA_HELP = ("analysis images: a folder of LQ images; 'ram7:ROOT' (the paper's 7 training tasks under a dataset "
             "root); or 'SOURCE+PRESET' with SOURCE shipped|deadleaves|FOLDER and PRESET ram-official-code|ram-paper "
             "(7 synthetic tasks)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "mac", help="rank layers by MAC / IG / random for RAM fine-tuning",
        description="Mask Attribute Conductance analysis (RAM stage 2). Cost: steps x images forward+backward "
                    "passes. Paper settings: --steps 200 --ratio 0.5 --images 10 --crop 64 on ram7: data.")
    parser.add_argument("--model", required=True, help="pre-trained weights file (uses its 'params') or a preset name")
    parser.add_argument("--data", help=DATA_HELP + " (not needed for --method random)")
    parser.add_argument("-o", "--output", required=True, help="output ranking directory")
    parser.add_argument("--method", choices=("mac", "ig", "random"), default="mac")
    parser.add_argument("--steps", type=int, default=200, help="path steps N (default 200)")
    parser.add_argument("--ratio", type=float, default=0.5, help="path start ratio r: alpha runs 1-r -> 1 (default 0.5)")
    parser.add_argument("--k", type=float, default=10_000.0, help="sigmoid sharpness (delta) of the soft mask")
    parser.add_argument("--eps", type=float, default=1e-12, help="edge-energy epsilon")
    parser.add_argument("--images", type=int, default=10, help="images per task (default 10)")
    parser.add_argument("--crop", type=int, default=64, help="centre crop size (default 64)")
    parser.add_argument("--preset", choices=("official-code", "paper"), default="official-code",
                        help="degradation ranges for ram7: data")
    parser.add_argument("--seed", type=int, default=0, help="seed for pixel orders, degradations, random ranking")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same result, faster)")
    parser.add_argument("--param-key", default="params", help="weights entry to analyse (RAM uses 'params')")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--top", type=int, default=30, help="layers shown in ranking.png")
    return parser


def _load(model_arg: str, param_key: str):
    from anyrestore.archs.registry import build_model

    path = Path(model_arg)
    if not path.is_file() and (path.suffix in (".pth", ".pt", ".ckpt", ".safetensors") or "/" in model_arg):
        from anyrestore.errors import ConfigError

        raise ConfigError(f"weights file not found: {model_arg}")
    if path.is_file():
        from anyrestore.checkpoints import file_sha256, load_model

        model = load_model(path, param_key=param_key)
        return model, {"file": str(path), "key": param_key, "sha256": file_sha256(path)}
    return build_model(model_arg), {"file": None, "key": None, "sha256": None, "preset": model_arg,
                                    "note": "randomly initialised preset"}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from anyrestore.errors import ConfigError
    from anyrestore.inference.predictor import select_device
    from anyrestore.methods.ram.finetune import write_ranking
    from anyrestore.methods.ram.mac import MacSettings, rank_layers
    from anyrestore.methods.ram.mac_data import mac_images
    from anyrestore.methods.ram.plots import draw_ranking

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    settings = MacSettings(method=args.method, total_step=args.steps, start_ratio=args.ratio, k=args.k,
                           eps=args.eps, seed=args.seed, batch_size=args.batch_size)
    model, weights = _load(args.model, args.param_key)
    model = model.to(select_device(args.device))
    images, tasks, records, data_info, preset = [], [], [], {}, None
    if args.method != "random":
        if not args.data:
            raise ConfigError("--data is required for --method mac and ig")
        data = mac_images(args.data, count=args.images, crop=args.crop, seed=args.seed, preset=args.preset)
        images = [im.image for im in data.images]
        tasks = [im.task for im in data.images]
        records = [im.record() for im in data.images]
        data_info, preset = {"spec": args.data, "skipped_small": data.skipped}, data.preset
        if data.skipped:
            print(f"skipped {len(data.skipped)} image(s) smaller than {args.crop}x{args.crop}")
    passes = settings.total_step * -(-len(images) // settings.batch_size)
    with tqdm(total=passes, desc=f"{args.method} ({len(images)} images)", unit="pass",
              disable=args.method == "random") as bar:
        analysis = rank_layers(model, images, tasks=tasks or None, settings=settings, progress=bar.update)
    extra = analysis.json_extra()
    extra["settings"].update({"crop": args.crop, "num_samples": args.images, "preset": preset,
                              "tasks": list(dict.fromkeys(tasks))})
    out = Path(args.output)
    write_ranking(analysis.ranking, out, extra={"arch": getattr(model, "arch_name", type(model).__name__),
                                                "weights": weights, "data": data_info, "images": records, **extra})
    note = draw_ranking(analysis.ranking, out / "ranking.png", top=args.top,
                        title=f"{args.method.upper()} layer ranking ({len(analysis.ranking.names)} layers)")
    r = analysis.ranking
    print(f"ranked {len(r.names)} layers by {args.method} ({analysis.passes} forward/backward passes) -> {out}")
    for rank in range(min(5, len(r.names))):
        print(f"  {rank + 1:3d}  {r.names[rank]}  [{r.indices[rank]}]  {r.scores[rank]:.6f}")
    if note:
        print(note)
    return 0
