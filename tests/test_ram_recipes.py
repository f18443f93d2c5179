"""RAM recipes (configs/ram/) carry the hyper-parameters of ram.md §3, and the pre-training objective works for
every backbone of the zoo (mask applied to the input, before the network)."""
from pathlib import Path

import pytest
import torch

from anyrestore.archs.registry import build_model, model_meta
from anyrestore.engine.config import load_config
from anyrestore.engine.objectives import build_objective
from anyrestore.methods.ram.finetune import enumerate_layers, num_selected
from anyrestore.methods.ram.masking import apply_mask, batch_mask, masked_l1
from anyrestore.methods.ram.pretrain import step_generator

RAM_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ram"

# ram.md §3: (recipe, preset, batch per GPU, crop, workers, iterations, lr, eta_min, warm-up, EMA, checkpoint every)
PAPER_SCALE = [
    ("ram-swinir-pretrain", "swinir-ram", 12, 64, 6, 400_000, 1e-4, 6e-5, 10, 0.995, 10_000),
    ("ram-promptir-pretrain", "promptir-ram", 4, 128, 4, 1_200_000, 1e-4, 6e-5, 10, 0.995, 10_000),
    ("ram-swinir-finetune", "swinir-ram", 4, 64, 4, 160_000, 2e-4, 1e-7, 4000, None, 2000),
    ("ram-promptir-finetune", "promptir-ram", 4, 128, 4, 160_000, 2e-4, 1e-7, 4000, None, 2000),
]


@pytest.mark.parametrize("recipe, preset, batch, crop, workers, iters, lr, eta_min, warmup, ema, ckpt", PAPER_SCALE)
def test_paper_scale_recipes_match_the_spec(recipe, preset, batch, crop, workers, iters, lr, eta_min, warmup, ema,
                                            ckpt):
    cfg = load_config(RAM_CONFIGS / f"{recipe}.yaml")
    assert cfg.model.name == preset
    assert (cfg.data.batch_size, cfg.data.crop, cfg.data.num_workers) == (batch, crop, workers)
    assert (cfg.train.iterations, cfg.train.ema_decay, cfg.train.ckpt_every) == (iters, ema, ckpt)
    assert (cfg.optim.type, cfg.optim.lr, list(cfg.optim.betas), cfg.optim.eps) == ("adam", lr, [0.9, 0.99], 1e-8)
    assert cfg.optim.weight_decay == 0.0 and cfg.optim.grad_clip is None
    sched = cfg.schedule
    assert (sched.type, sched.warmup, sched.eta_min, sched.periods) == ("cosine", warmup, eta_min, None)
    # the 8-stream official-code mixture: 4 paired tasks (low light split real/synthetic) + LSDIR x 4
    weights = {s.name: s.weight for s in cfg.data.streams}
    assert weights["lowlight-real"] + weights["lowlight-syn"] == weights["dehaze"] == 1.0
    assert weights["lsdir"] == 4.0 and cfg.data.streams[-1].degradation == "ram-official-code"
    assert cfg.data.epoch_length == 1589 * 8 * 10 and cfg.data.augment == "hflip"


@pytest.mark.parametrize("recipe", ["ram-swinir-pretrain", "ram-promptir-pretrain"])
def test_pretrain_recipes_use_the_paper_mask_objective(recipe):
    cfg = load_config(RAM_CONFIGS / f"{recipe}.yaml")
    objective = build_objective(cfg.objective)
    assert (objective.mask_ratio, objective.mask_patch_size, objective.per_sample_mask,
            objective.pretrain_input, objective.token) == (0.5, 1, False, "lq", 0.0)
    assert cfg.model.pretrained is None


@pytest.mark.parametrize("recipe, layers, selected", [("ram-swinir-finetune", 263, 26),
                                                      ("ram-promptir-finetune", 445, 133)])
def test_finetune_recipes_select_the_published_layer_counts(recipe, layers, selected):
    cfg = load_config(RAM_CONFIGS / f"{recipe}.yaml")
    assert cfg.objective["type"] == "ram_finetune"
    assert (cfg.model.param_key, cfg.model.strict) == ("params", True)  # D16
    assert cfg.distributed.find_unused_parameters is True  # frozen layers get no gradient under DDP (D3)
    with torch.device("meta"):
        model = build_model(cfg.model.name)
    n = len(enumerate_layers(model))
    assert (n, num_selected(n, cfg.objective["ratio"])) == (layers, selected)


@pytest.mark.parametrize("recipe", ["ram-tiny-pretrain", "ram-tiny-finetune"])
def test_tiny_cpu_recipes_load(recipe):
    cfg = load_config(RAM_CONFIGS / f"{recipe}.yaml")
    assert cfg.model.name == "swinir-ram-tiny" and cfg.train.device == "cpu"
    assert cfg.objective["type"] in ("ram_pretrain", "ram_finetune")
    build_objective(cfg.objective)


@pytest.mark.parametrize("preset", ["nafnet-tiny", "restormer-tiny", "promptir-tiny", "swinir-tiny",
                                    "retinexformer-tiny", "swinir-ram-tiny", "promptir-ram-tiny"])
def test_pretrain_objective_works_for_every_backbone(preset):
    torch.manual_seed(0)
    model = build_model(preset)
    meta = model_meta(model)
    g = torch.Generator().manual_seed(1)
    batch = {"gt": torch.rand(2, 3, 16, 16, generator=g)}
    batch["lq"] = (batch["gt"] + 0.1 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
    result = build_objective({"type": "ram_pretrain", "seed": 5})(model, batch)
    mask = batch_mask(2, 16, 16, generator=step_generator(5, 0, 0))
    with torch.no_grad():
        out = model(apply_mask(meta.normalize(batch["lq"]), mask))
        expected = masked_l1(out, meta.normalize(batch["gt"]), mask)
    assert result["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert result["mask_fraction"].item() == 0.5
    result["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# RAM-SwinIR takes the (B,H,W) mask of ram.md §4.2; RAM-PromptIR currently documents (B,1,H,W)
@pytest.mark.parametrize("preset, channel_dim", [("swinir-ram-tiny", False), ("promptir-ram-tiny", True)])
def test_ram_backbones_mask_argument_equals_masking_the_input(preset, channel_dim):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    x = torch.randn(2, 3, 20, 20)  # not a multiple of the pad size: the mask is applied before padding
    mask = batch_mask(2, 20, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        direct = model(x, mask=mask[:, None] if channel_dim else mask)
        assert torch.allclose(direct, model(apply_mask(x, mask)), atol=1e-6)
        assert not torch.allclose(direct, model(x), atol=1e-3)
