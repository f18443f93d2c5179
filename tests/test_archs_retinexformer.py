"""RetinexFormer: counts, key layout, family round trip, size rule, spandrel parity."""
import pytest
import torch

from anyrestore.archs import build_arch, build_model
from anyrestore.archs.blocks import pad_to_multiple
from anyrestore.archs.registry import FAMILIES

TINY = dict(n_feat=8, num_blocks=(1, 1, 1))


def official():
    return next(f for f in FAMILIES if f.arch == "retinexformer" and f.family == "official")


def randomize(model, seed=0):
    """Seeded random values for every parameter; LayerNorm weights and ``rescale`` around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            around_one = name.endswith(("norm.weight", "rescale"))
            p.copy_(1 + 0.1 * noise if around_one else 0.05 * noise)
    return model.eval()


def image(h, w, batch=1, seed=1):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_counts_and_keys():
    with torch.device("meta"):
        model = build_model("retinexformer")
    assert sum(p.numel() for p in model.parameters()) == 1_605_701
    sd = model.state_dict()
    assert len(sd) == 122
    shapes = {
        "body.0.estimator.conv1.weight": (40, 4, 1, 1),
        "body.0.estimator.depth_conv.weight": (40, 10, 5, 5),
        "body.0.estimator.conv2.weight": (3, 40, 1, 1),
        "body.0.denoiser.embedding.weight": (40, 3, 3, 3),
        "body.0.denoiser.encoder_layers.0.0.blocks.0.0.rescale": (1, 1, 1),
        "body.0.denoiser.encoder_layers.0.0.blocks.0.0.to_q.weight": (40, 40),
        "body.0.denoiser.encoder_layers.0.0.blocks.0.0.pos_emb.2.weight": (40, 1, 3, 3),
        "body.0.denoiser.encoder_layers.0.0.blocks.0.1.fn.net.2.weight": (160, 1, 3, 3),
        "body.0.denoiser.encoder_layers.1.1.weight": (160, 80, 4, 4),
        "body.0.denoiser.encoder_layers.1.2.weight": (160, 80, 4, 4),
        "body.0.denoiser.bottleneck.blocks.1.0.rescale": (4, 1, 1),
        "body.0.denoiser.decoder_layers.0.0.weight": (160, 80, 2, 2),
        "body.0.denoiser.decoder_layers.0.0.bias": (80,),
        "body.0.denoiser.decoder_layers.0.1.weight": (80, 160, 1, 1),
        "body.0.denoiser.decoder_layers.1.1.weight": (40, 80, 1, 1),
        "body.0.denoiser.decoder_layers.1.2.blocks.0.1.norm.bias": (40,),
        "body.0.denoiser.mapping.weight": (3, 40, 3, 3),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "body.0.denoiser.decoder_layers.1.2.blocks.1.0.rescale" not in sd


def test_family_round_trip_and_inference():
    model = randomize(build_arch("retinexformer", **TINY, stage=2))
    sd = official().from_canonical(model.state_dict())
    assert official().detect(sd)
    kwargs = official().infer_kwargs(sd)
    assert kwargs == {"in_channels": 3, "out_channels": 3, "n_feat": 8, "stage": 2, "num_blocks": [1, 1, 1]}
    rebuilt = build_arch("retinexformer", **kwargs).eval()
    rebuilt.load_state_dict(official().to_canonical(sd), strict=True)
    x = image(32, 24)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_size_rule_and_gradients():
    model = randomize(build_model("retinexformer-tiny")).train()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(image(66, 70))
    x = image(66, 70)
    y = model(pad_to_multiple(x, model.meta.pad_multiple))[..., :66, :70]
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parity
@pytest.mark.parametrize("hw", [(64, 64), (60, 44)])
def test_spandrel_parity(hw):
    pytest.importorskip("spandrel")
    from spandrel.architectures.RetinexFormer.__arch.retinexformer_arch import RetinexFormer as RefRetinexFormer

    ref = randomize(RefRetinexFormer(in_channels=3, out_channels=3, n_feat=40, stage=1, num_blocks=[1, 2, 2]))
    ref_sd = ref.state_dict()
    assert official().detect(ref_sd)
    ours = build_arch("retinexformer", **official().infer_kwargs(ref_sd)).eval()
    ours.load_state_dict(official().to_canonical(ref_sd), strict=True)
    assert list(ours.state_dict()) == list(ref_sd)
    x = image(*hw, batch=2)
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert (out - expected).abs().max() <= 1e-4


def test_golden_output():
    """Seeded random tiny model on a seeded 32x32 input; set ANYRESTORE_UPDATE_GOLDEN=1 to rewrite the file."""
    import json
    import os
    from pathlib import Path

    model = randomize(build_arch("retinexformer", **TINY), seed=7)
    with torch.no_grad():
        flat = model(image(32, 32, seed=11)).flatten().double()
    picks = torch.linspace(0, flat.numel() - 1, 8).long()
    got = {"sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(), "samples": flat[picks].tolist()}
    path = Path(__file__).parent / "data" / "golden" / "retinexformer.json"
    if os.environ.get("ANYRESTORE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"arch": "retinexformer", "kwargs": TINY, **got}, indent=1))
    ref = json.loads(path.read_text())
    assert got["sum"] == pytest.approx(ref["sum"], abs=1e-5 * max(1.0, abs(ref["sum"])))
    assert got["abs_sum"] == pytest.approx(ref["abs_sum"], abs=1e-5 * ref["abs_sum"])
    assert got["samples"] == pytest.approx(ref["samples"], abs=1e-5)
