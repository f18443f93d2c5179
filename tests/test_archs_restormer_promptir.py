"""Restormer / PromptIR (+RAM, +MaskDCPT) behaviour: shapes, gradients, flags, family equivalences, hooks
(backbones.md §3-4, §10.5-10.8)."""
import re

import pytest
import torch

from _zoo_testutil import image, randomize_
from anyrestore.archs import build_model
from anyrestore.archs.blocks import ChannelLayerNorm, pad_to_multiple
from anyrestore.archs.promptir import drop_unused
from anyrestore.checkpoints import export_state_dict, load_into

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), prompt_dims=(8, 8, 16),
            prompt_sizes=(8, 4, 2))


def rnd(name, seed=0, **kw):
    return randomize_(build_model(name, **kw), seed=seed).eval()


def test_restormer_odd_size_keeps_shape_and_pads_reflect():
    model = rnd("restormer-tiny")
    x = image(37, 53)
    with torch.no_grad():
        out = model(x)
        padded = model(pad_to_multiple(x, 8, "reflect"))[:, :, :37, :53]
    assert out.shape == x.shape
    assert torch.equal(out, padded)


def test_promptir_official_rejects_non_multiple_and_ram_pads():
    with torch.no_grad():
        with pytest.raises(ValueError, match="multiples of 8"):
            rnd("promptir-tiny")(image(70, 50))
        out = rnd("promptir-ram-tiny")(image(70, 50))
        assert out.shape == (1, 3, 70, 50)
        assert rnd("promptir-tiny")(image(40, 48)).shape == (1, 3, 40, 48)


@pytest.mark.parametrize("name", ["restormer-tiny", "promptir-tiny", "promptir-ram-tiny"])
def test_gradients_reach_every_parameter(name):
    model = rnd(name).train()
    model(image(32, 32)).square().mean().backward()
    for pname, p in model.named_parameters():
        if pname.startswith(("chnl_reduce", "reduce_noise_channel_")):
            assert p.grad is None, pname  # upstream's never-called convs
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["restormer-tiny", "promptir-tiny"])
def test_encode_decode_head_equals_forward(name):
    model = rnd(name)
    x = image(32, 40)
    with torch.no_grad():
        assert torch.equal(model.decode_head(model.encode(x), x, True), model(x))


def test_layernorm_kinds():
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(0))
    with_bias, bias_free, torch_ln = (ChannelLayerNorm(16, kind=k) for k in ("WithBias", "BiasFree", "torch"))
    for ln in (with_bias, bias_free, torch_ln):
        randomize_(ln, seed=4)
    torch_ln.body.bias.data.copy_(with_bias.body.bias)
    ref = x.permute(0, 2, 3, 1)
    mu, var = ref.mean(-1, keepdim=True), ref.var(-1, keepdim=True, unbiased=False)
    expected = ((ref - mu) / (var + 1e-5).sqrt() * with_bias.body.weight + with_bias.body.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(with_bias(x), expected, rtol=0, atol=1e-6)
    expected_bf = (ref / (var + 1e-5).sqrt() * bias_free.body.weight).permute(0, 3, 1, 2)
    torch.testing.assert_close(bias_free(x), expected_bf, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch_ln(x), with_bias(x), rtol=0, atol=1e-5)  # same formula, other kernel
    with pytest.raises(ValueError, match="LayerNorm kind"):
        ChannelLayerNorm(4, kind="Group")


def test_numerics_flags_change_output():
    x = image(32, 32)
    with torch.no_grad():
        base = rnd("restormer-tiny")(x)
        biasfree = rnd("restormer-tiny", layernorm="BiasFree")
        biasfree.load_state_dict({k: v for k, v in rnd("restormer-tiny").state_dict().items()
                                  if not k.endswith("body.bias")})
        torch_ln = rnd("restormer-tiny", layernorm="torch")
        assert (biasfree(x) - base).abs().max() > 1e-4
        torch.testing.assert_close(torch_ln(x), base, rtol=0, atol=1e-5)


def test_ram_promptir_equals_official_without_unused_convs():
    official = rnd("promptir", **TINY)
    ram = build_model("ram_promptir", **TINY).eval()
    ram.load_state_dict(drop_unused(official.state_dict()))
    x = image(32, 48)  # multiple of 16: RAM's internal pad is a no-op
    with torch.no_grad():
        assert torch.equal(ram(x), official(x))
        assert torch.equal(ram(x, torch.zeros(1, 1, 32, 48)), ram(x))  # mask m = 0 is a no-op
        mask = (torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(2)) > 0.5).float()
        assert torch.equal(ram(x, mask), ram(x * (1 - mask)))  # zero mask token
        assert not torch.equal(ram(x, mask), ram(x))


def test_maskdcpt_promptir_equals_official_with_bias_after_rename():
    official = rnd("promptir", bias=True, unused_modules=False, **TINY)
    mask_layout = export_state_dict(build_model("maskdcpt_promptir", **TINY), "maskdcpt")
    assert any(".blocks." in k for k in mask_layout)
    exported = {k: v for k, v in zip(mask_layout, official.state_dict().values())}  # same order, renamed
    from anyrestore.archs.promptir import _maskdcpt_to_canonical

    ours = build_model("maskdcpt_promptir", **TINY).eval()
    load_into(ours, _maskdcpt_to_canonical(exported))
    x = image(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), rtol=0, atol=1e-5)


def _install_ones_hooks(model):
    handles = []
    for name, module in model.named_modules():
        if any(re.fullmatch(p, name) for p in model.MASK_POINTS["pre"]):
            handles.append(module.register_forward_pre_hook(lambda m, args: (args[0] * torch.ones_like(args[0]),)))
        if any(re.fullmatch(p, name) for p in model.MASK_POINTS["post"]):
            handles.append(module.register_forward_hook(lambda m, args, out: out * torch.ones_like(out)))
    return handles


@pytest.mark.parametrize("name,expected", [("restormer-tiny", 2 + 8 * 4 + 6), ("promptir-tiny", 2 + 11 * 4 + 6 + 6)])
def test_maskdcpt_hook_points_all_visible_is_exact_noop(name, expected):
    model = rnd(name)
    x = image(32, 32)
    with torch.no_grad():
        ref = model(x)
        handles = _install_ones_hooks(model)
        out = model(x)
    assert len(handles) == expected
    assert torch.equal(out, ref)


def test_lora_restormer_is_identity_at_init_and_merges_exactly():
    from anyrestore.archs.restormer import merge_lora_state_dict

    tiny = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2))
    lora = build_model("lora_restormer", **tiny).eval()
    plain = build_model("restormer", **tiny).eval()
    plain.load_state_dict(merge_lora_state_dict(lora.state_dict()))  # lora_B = 0 at init: merge = base weights
    x = image(32, 32)
    with torch.no_grad():
        assert torch.equal(lora(x), plain(x))
        randomize_(lora, seed=3)
        plain.load_state_dict(merge_lora_state_dict(lora.state_dict(), scaling=2.0))
        torch.testing.assert_close(lora(x), plain(x), rtol=0, atol=1e-5)
        assert (lora(x) - plain(x)).abs().max() < (lora(x) - rnd("restormer", **tiny)(x)).abs().max()


def test_ram_promptir_takes_the_ram_mask_shape_and_token():
    import torch
    from anyrestore.archs.registry import build_model

    torch.manual_seed(0)
    model = build_model("promptir-ram-tiny").eval()
    x = torch.randn(2, 3, 20, 24)
    mask = (torch.rand(2, 20, 24) > 0.5).float()
    with torch.no_grad():
        expected = model(x * (1 - mask[:, None]) + 0.25 * mask[:, None])
        assert torch.equal(model(x, mask=mask, mask_token=0.25), expected)
        assert torch.equal(model(x, mask=mask[:, None], mask_token=0.25), expected)
        assert torch.equal(model(x, mask=torch.zeros(2, 20, 24)), model(x))
        try:
            model(x, mask=torch.zeros(2, 19, 24))
        except ValueError as exc:
            assert "(B, H, W)" in str(exc)
        else:
            raise AssertionError("a mask of the wrong size must be refused")
