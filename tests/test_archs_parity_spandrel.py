"""Numerical parity with spandrel 0.4.2 / spandrel_extra_arches 0.2.0 (backbones.md §9.2, §10.4).

Both sides get the same seeded random weights (every parameter, not default init), fp32, CPU, eval, no_grad.
"""
import pytest
import torch

from _zoo_testutil import image, randomize_
from anyrestore.archs import build_model
from anyrestore.archs.blocks import TransformerBlock
from anyrestore.checkpoints import export_state_dict, load_into

pytestmark = pytest.mark.parity
spandrel = pytest.importorskip("spandrel")

TOL = dict(rtol=1e-4, atol=1e-5)
NAF = dict(width=8, enc_blocks=(1, 2, 1, 1), middle_blocks=2, dec_blocks=(1, 1, 2, 1))


def _ref_nafnet():
    from spandrel.architectures.NAFNet import NAFNet

    return NAFNet(img_channel=3, width=8, middle_blk_num=2, enc_blk_nums=[1, 2, 1, 1], dec_blk_nums=[1, 1, 2, 1])


def _restormer_ref(**kwargs):
    extra = pytest.importorskip("spandrel_extra_arches.architectures.Restormer")
    return extra.Restormer(inp_channels=3, out_channels=3, dual_pixel_task=False, **kwargs)


@pytest.mark.parametrize("size", [(64, 48), (60, 52)])
def test_nafnet_official(size):
    ours = randomize_(build_model("nafnet", **NAF)).eval()
    ref = _ref_nafnet().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = image(*size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_nafnet_local_equals_reference_below_one_and_a_half_train_size():
    ours = randomize_(build_model("nafnet_local", train_size=32, **NAF)).eval()
    ref = _ref_nafnet().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = image(48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_nafnet_maskdcpt_after_rename_with_eps_fix():
    ours = randomize_(build_model("nafnet", ln_eps=1e-5, pad_mode="reflect", **NAF)).eval()
    maskdcpt_file = export_state_dict(ours, "maskdcpt")
    ref = _ref_nafnet().eval()
    from anyrestore.archs.nafnet import _MASKDCPT_TO_CANON
    from anyrestore.archs.blocks import rename_keys

    ref.load_state_dict(rename_keys(maskdcpt_file, _MASKDCPT_TO_CANON), strict=True)
    x = image(64, 48)
    with torch.no_grad():
        stale = ref(x)
        for module in ref.modules():
            if type(module).__name__ == "LayerNorm2d":
                module.eps = 1e-5
        torch.testing.assert_close(ours(x), ref(x), **TOL)
    assert (ours(x) - stale).abs().max() > 0  # the eps flag is what makes the difference


RESTORMER = dict(dim=8, num_blocks=[1, 2, 1, 2], num_refinement_blocks=1, heads=[1, 2, 2, 4], ffn_expansion_factor=2.66)


@pytest.mark.parametrize("layernorm,bias", [("WithBias", False), ("BiasFree", False), ("WithBias", True)])
def test_restormer_official(layernorm, bias):
    ours = randomize_(build_model("restormer", layernorm=layernorm, bias=bias, **RESTORMER)).eval()
    ref = _restormer_ref(LayerNorm_type=layernorm, bias=bias, **RESTORMER).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = image(64, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_restormer_maskdcpt_against_withbias_reference():
    ours = randomize_(build_model("restormer", layernorm="torch", **RESTORMER)).eval()
    ref = _restormer_ref(LayerNorm_type="WithBias", bias=False, **RESTORMER).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # canonical keys are shared; nn.LayerNorm lives in .body
    x = image(40, 56)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_lora_restormer_after_merge():
    from anyrestore.archs.restormer import merge_lora_state_dict

    ours = randomize_(build_model("lora_restormer", **RESTORMER)).eval()
    ref = _restormer_ref(LayerNorm_type="WithBias", bias=False, **RESTORMER).eval()
    ref.load_state_dict(merge_lora_state_dict(ours.state_dict(), scaling=2.0), strict=True)
    x = image(32, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


@pytest.mark.parametrize("dim,bias,layernorm", [(704, False, "WithBias"), (320, False, "WithBias"),
                                                 (160, False, "WithBias"), (160, True, "torch"),
                                                 (96, False, "BiasFree")])
def test_promptir_blocks_against_restormer_transformer_block(dim, bias, layernorm):
    from spandrel_extra_arches.architectures.Restormer.__arch.restormer_arch import TransformerBlock as RefBlock

    ours = randomize_(TransformerBlock(dim, num_heads=4, expansion=2.66, bias=bias, layernorm=layernorm)).eval()
    ref = RefBlock(dim=dim, num_heads=4, ffn_expansion_factor=2.66, bias=bias,
                   LayerNorm_type="WithBias" if layernorm == "torch" else layernorm).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, dim, 12, 10, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_promptir_every_block_matches_reference_blocks():
    model = randomize_(build_model("promptir-tiny")).eval()
    from spandrel_extra_arches.architectures.Restormer.__arch.restormer_arch import TransformerBlock as RefBlock

    checked = 0
    for name, block in model.named_modules():
        if isinstance(block, TransformerBlock):
            dim = block.norm1.body.weight.numel()
            ref = RefBlock(dim=dim, num_heads=block.attn.num_heads, ffn_expansion_factor=2.66, bias=False,
                           LayerNorm_type="WithBias").eval()
            ref.load_state_dict(block.state_dict(), strict=True)
            x = torch.randn(1, dim, 8, 8, generator=torch.Generator().manual_seed(checked))
            with torch.no_grad():
                torch.testing.assert_close(block(x), ref(x), **TOL, msg=name)
            checked += 1
    assert checked == 11


def test_spandrel_detects_our_official_exports():
    from spandrel import ModelLoader

    ours = randomize_(build_model("nafnet", **NAF)).eval()
    descriptor = ModelLoader().load_from_state_dict(export_state_dict(ours, "official"))
    assert descriptor.model.hyperparameters["width"] == 8
    x = image(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(descriptor.model(x), ours(x), **TOL)
    load_into(build_model("nafnet", **NAF), descriptor.model.state_dict())  # and back, strictly


@pytest.mark.slow
def test_full_size_nafnet_w64_and_restormer():
    from spandrel.architectures.NAFNet import NAFNet

    ours = randomize_(build_model("nafnet-w64")).eval()
    ref = NAFNet(img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1])
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = image(128, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref.eval()(x), **TOL)
    for layernorm in ("WithBias", "BiasFree"):
        ours = randomize_(build_model("restormer", layernorm=layernorm)).eval()
        ref = _restormer_ref(dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4, heads=[1, 2, 4, 8],
                             ffn_expansion_factor=2.66, bias=False, LayerNorm_type=layernorm).eval()
        ref.load_state_dict(ours.state_dict(), strict=True)
        x = image(64, 64)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), **TOL)


@pytest.mark.parametrize("preset", ["nafnet-w64", "nafnet-sidd-w32", "restormer", "restormer-biasfree"])
def test_full_size_key_layout_equals_reference(preset):
    """Names and shapes of every tensor equal the reference definition's (built on the meta device)."""
    from spandrel.architectures.NAFNet import NAFNet

    with torch.device("meta"):
        ours = build_model(preset)
        kw = ours.arch_kwargs
        if preset.startswith("nafnet"):
            ref = NAFNet(img_channel=3, width=kw["width"], middle_blk_num=kw["middle_blocks"],
                         enc_blk_nums=list(kw["enc_blocks"]), dec_blk_nums=list(kw["dec_blocks"]))
        else:
            ref = _restormer_ref(dim=48, num_blocks=[4, 6, 6, 8], num_refinement_blocks=4, heads=[1, 2, 4, 8],
                                 ffn_expansion_factor=2.66, bias=False, LayerNorm_type=kw.get("layernorm", "WithBias"))
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes(ours) == shapes(ref)
