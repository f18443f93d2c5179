"""The exact fast paths (anyrestore/archs/fastpaths.py): every one equals the plain official formula within 1e-4
in fp32 (forward in eval, gradients in train mode), switches really switch, channels-last and compile agree."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from anyrestore.archs import build_model
from anyrestore.archs import blocks as blocks_mod
from anyrestore.archs.nafnet import LocalAvgPool2d, NAFBlock
from anyrestore.archs.blocks import ChannelLayerNorm, LayerNorm2d, bias_free_channel_norm, channel_layer_norm
from anyrestore.archs.fastpaths import (
    FAST_PATHS, ChannelsLast, fast_path_state, optimize_model, set_fast_paths,
)
from anyrestore.errors import ConfigError

from _zoo_testutil import image, randomize_

TOL = 1e-4
_PROMPT_TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                    prompt_dims=(8, 8, 16), prompt_sizes=(8, 4, 2))
_SWIN_TINY = dict(img_size=32, embed_dim=24, depths=(2, 2), num_heads=(2, 3), drop_path_rate=0.0)

# (case id, model name, overrides, input H, W, batch); sizes chosen so shift masks are computed on the fly
CASES = [
    ("nafnet", "nafnet-tiny", {}, 37, 53, 1),
    ("nafnet-local", "nafnet_local", dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1),
                                          train_size=16), 40, 56, 1),
    ("restormer-withbias", "restormer-tiny", {}, 37, 53, 1),
    ("restormer-biasfree", "restormer-tiny", dict(layernorm="BiasFree"), 24, 32, 2),
    ("restormer-torchln", "restormer-tiny", dict(layernorm="torch"), 24, 24, 1),
    ("promptir", "promptir-tiny", {}, 32, 40, 1),
    ("promptir-ram", "promptir-ram-tiny", {}, 37, 53, 1),
    ("promptir-maskdcpt", "maskdcpt_promptir", _PROMPT_TINY, 32, 32, 1),
    ("swinir", "swinir-tiny", {}, 37, 53, 1),
    ("swinir-batch2", "swinir-tiny", {}, 24, 40, 2),
    ("swinir-ram", "swinir-ram-tiny", {}, 37, 53, 1),
    ("swinir-ram-imgsize", "swinir-ram-tiny", {}, 32, 32, 1),  # the precomputed attn_mask buffer
    ("swinir-maskdcpt", "maskdcpt_swinir", _SWIN_TINY, 40, 56, 1),
    ("swinir-window7", "swinir", dict(_SWIN_TINY, window_size=7, img_size=28), 37, 53, 1),
    ("retinexformer", "retinexformer-tiny", {}, 36, 52, 1),
]
IDS = [c[0] for c in CASES]


def _pair(name: str, overrides: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(fast, plain) copies of one randomly initialised model."""
    fast = randomize_(build_model(name, **overrides), seed=3)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a bias table and rescale of N(0, 0.05) / 0.05 would hardly change the attention
        for n, p in fast.named_parameters():
            if n.endswith("relative_position_bias_table"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif n.endswith("rescale"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
    plain = set_fast_paths(copy.deepcopy(fast), False)
    set_fast_paths(fast, True)
    return fast, plain


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fast_equals_plain_forward(case):
    _, name, overrides, h, w, batch = case
    fast, plain = _pair(name, overrides)
    assert all(on == total for on, total in fast_path_state(fast).values())
    assert all(on == 0 for on, _ in fast_path_state(plain).values())
    x = image(h, w, seed=7, batch=batch)
    with torch.inference_mode():
        y_fast, y_plain = fast.eval()(x), plain.eval()(x)
    assert y_fast.shape == y_plain.shape == x.shape
    assert (y_fast - y_plain).abs().max().item() <= TOL
    # not vacuous: the model is not (close to) the identity
    assert (y_plain - x).abs().max().item() > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fast_equals_plain_gradients(case):
    _, name, overrides, h, w, batch = case
    fast, plain = _pair(name, overrides)
    x = image(h, w, seed=8, batch=batch)
    target = image(h, w, seed=9, batch=batch)
    grads = []
    for model in (fast, plain):
        model.train()
        model.zero_grad()
        F.l1_loss(model(x), target).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for n in grads[0]:
        scale = max(1.0, grads[1][n].abs().max().item())
        assert (grads[0][n] - grads[1][n]).abs().max().item() <= TOL * scale, n


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("nafnet", "restormer-withbias", "promptir-ram",
                                                                "swinir-ram", "retinexformer")],
                         ids=lambda c: c[0])
def test_channels_last_equals_plain(case):
    _, name, overrides, h, w, batch = case
    fast, plain = _pair(name, overrides)
    fast.eval()
    wrapped = optimize_model(fast, channels_last=True)
    assert isinstance(wrapped, ChannelsLast)
    assert wrapped.meta is fast.meta and wrapped.arch_name == fast.arch_name
    assert wrapped.arch_kwargs == fast.arch_kwargs
    assert next(p for p in fast.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    x = image(h, w, seed=10, batch=batch)
    with torch.inference_mode():
        assert (wrapped(x) - plain.eval()(x)).abs().max().item() <= TOL


def test_layernorm_helpers_match_official_formulas():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 5, 7, generator=gen) * 3 + 1
    w, b = torch.randn(12, generator=gen), torch.randn(12, generator=gen)
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    expected = (x - mu) / torch.sqrt(var + 1e-5) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        out = channel_layer_norm(inp, w, b, 1e-5)
        assert torch.allclose(out, expected, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)  # no copy back to NCHW
    expected_bf = x / torch.sqrt(var + 1e-5) * w.view(1, -1, 1, 1)
    assert torch.allclose(bias_free_channel_norm(x, w, 1e-5), expected_bf, atol=1e-5)


@pytest.mark.parametrize("module", [LayerNorm2d(12, eps=1e-6), ChannelLayerNorm(12, kind="WithBias"),
                                    ChannelLayerNorm(12, kind="BiasFree"), ChannelLayerNorm(12, kind="torch")],
                         ids=["ln2d", "withbias", "biasfree", "torch"])
def test_layernorm_modules_switch(module):
    randomize_(module, seed=1, std=0.3)
    x = torch.randn(1, 12, 9, 6, generator=torch.Generator().manual_seed(2)) * 2
    set_fast_paths(module, fused_layernorm=True)
    fast = module(x)
    set_fast_paths(module, fused_layernorm=False)
    assert module.fused_layernorm is False
    assert (fast - module(x)).abs().max().item() <= 1e-5


def test_set_fast_paths_switches_each_path_separately():
    model = build_model("restormer-tiny")
    state = fast_path_state(model)
    assert set(state) == set(FAST_PATHS)
    n_norms = sum(isinstance(m, ChannelLayerNorm) for m in model.modules())
    n_attn = sum(isinstance(m, blocks_mod.MDTA) for m in model.modules())
    none = {"window_sdpa": (0, 0), "folded_scales": (0, 0)}  # SwinIR's and NAFNet's paths
    assert state == {"fused_layernorm": (n_norms, n_norms), "sdpa": (n_attn, n_attn), **none}  # on by default
    assert set_fast_paths(model, True, sdpa=False) is model
    assert fast_path_state(model) == {"fused_layernorm": (n_norms, n_norms), "sdpa": (0, n_attn), **none}
    set_fast_paths(model, False, sdpa=True)
    assert fast_path_state(model) == {"fused_layernorm": (0, n_norms), "sdpa": (n_attn, n_attn), **none}
    nafnet = build_model("nafnet-tiny")
    n_blocks = sum(isinstance(m, NAFBlock) for m in nafnet.modules())
    set_fast_paths(nafnet, True, folded_scales=False)
    assert fast_path_state(nafnet)["folded_scales"] == (0, n_blocks) and n_blocks > 0
    swin = build_model("swinir-ram-tiny")
    n_windows = sum(type(m).__name__ == "WindowAttention" for m in swin.modules())
    set_fast_paths(swin, True, window_sdpa=False)
    assert fast_path_state(swin)["window_sdpa"] == (0, n_windows) and n_windows > 0
    assert fast_path_state(swin)["sdpa"] == (0, 0)  # window attention has its own switch


@pytest.mark.parametrize("batch,local", [(1, False), (2, False), (1, True)], ids=["one", "batch2", "tlc-local"])
def test_folded_nafblock_equals_plain_and_steps_aside_for_hooks(batch, local, monkeypatch):
    block = NAFBlock(8)
    randomize_(block, seed=1, std=0.5)
    if local:  # TLC: the SCA scale varies over the map, so it cannot be folded into the weights
        block.sca[0] = LocalAvgPool2d((5, 5))
    x = image(12, 16, seed=2, batch=batch).repeat(1, 3, 1, 1)[:, :8]
    with torch.no_grad():
        block.folded_scales = False
        plain = block(x)
        block.folded_scales = True
        calls = []
        original = NAFBlock._folded_tail
        monkeypatch.setattr(NAFBlock, "_folded_tail", lambda self, *a: calls.append(1) or original(self, *a))
        assert (block(x) - plain).abs().max().item() <= 1e-5 and calls == [1]
        assert (plain - x).abs().max().item() > 1e-2
        # a hook on conv3 (MaskDCPT's re-masking) must see conv3's own output: the plain path runs
        handle = block.conv3.register_forward_hook(lambda m, i, o: o * 0.5)
        hooked = block(x)
        handle.remove()
        assert calls == [1] and (hooked - plain).abs().max().item() > 1e-3


def test_window_sdpa_switch_routes_swin_attention_through_sdpa(monkeypatch):
    model = randomize_(build_model("swinir-ram-tiny"), seed=4).eval()
    n_blocks = sum(1 for m in model.modules() if type(m).__name__ == "WindowAttention")
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    x = image(40, 40)
    with torch.inference_mode():
        model(x)
        assert len(calls) == n_blocks and all(m is not None for m in calls)
        set_fast_paths(model, False)
        model(x)
    assert len(calls) == n_blocks


def test_sdpa_switch_routes_mdta_and_igmsa_through_transposed_attention(monkeypatch):
    calls = []
    real = blocks_mod.transposed_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    import anyrestore.archs.retinexformer as rf_mod

    monkeypatch.setattr(blocks_mod, "transposed_attention", counting)
    monkeypatch.setattr(rf_mod, "transposed_attention", counting)
    for name, size in (("restormer-tiny", 16), ("retinexformer-tiny", 16)):
        model = build_model(name).eval()
        n_attn = fast_path_state(model)["sdpa"][1]
        with torch.inference_mode():
            calls.clear()
            model(image(size, size))
            assert len(calls) == n_attn > 0
            set_fast_paths(model, False)
            calls.clear()
            model(image(size, size))
            assert calls == []


def test_position_bias_follows_the_table():
    fast, plain = _pair("swinir-tiny", {})
    fast.eval()
    plain.eval()
    x = image(24, 24)
    with torch.inference_mode():
        fast(x)  # fills the caches
    new_sd = {k: (v + 0.3 if k.endswith("relative_position_bias_table") else v) for k, v in plain.state_dict().items()}
    fast.load_state_dict(new_sd)
    plain.load_state_dict(new_sd)
    with torch.inference_mode():
        assert (fast(x) - plain(x)).abs().max().item() <= TOL
    with torch.no_grad():
        for m in (fast, plain):
            m.layers[0].residual_group.blocks[1].attn.relative_position_bias_table.mul_(-2.0)
        assert (fast(x) - plain(x)).abs().max().item() <= TOL


def test_transposed_attention_layouts_agree():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 50, generator=gen) for _ in range(3))
    temp = torch.rand(3, 1, 1, generator=gen) + 0.5
    ref = ((F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * temp).softmax(-1) @ v
    a = blocks_mod.transposed_attention(q, k, v, temp)
    b = blocks_mod.transposed_attention(q.transpose(-2, -1), k.transpose(-2, -1), v.transpose(-2, -1), temp,
                                        tokens_last=False)
    assert torch.allclose(a, ref, atol=1e-6) and torch.allclose(b.transpose(-2, -1), ref, atol=1e-6)
    # F.normalize's eps: an all-zero row gives zeros, not NaN
    q[0, 0, 0] = 0
    assert torch.isfinite(blocks_mod.transposed_attention(q, k, v, temp)).all()


def test_optimize_model_plain_and_attrs():
    model = build_model("nafnet-tiny")
    out = optimize_model(model, fast=False)
    assert out is model and fast_path_state(model)["fused_layernorm"][0] == 0
    assert optimize_model(model) is model and fast_path_state(model)["fused_layernorm"][0] > 0


def test_compile_unusable_raises_config_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ConfigError, match="torch.compile is unusable.*no C\\+\\+ compiler found"):
        optimize_model(build_model("nafnet-tiny"), compile=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["restormer-tiny", "swinir-ram-tiny", "nafnet-tiny"])
def test_compiled_equals_plain(name):
    fast, plain = _pair(name, {})
    compiled = optimize_model(fast.eval(), compile=True)
    assert compiled.meta is fast.meta and compiled.arch_kwargs == fast.arch_kwargs
    x = image(32, 32)
    with torch.no_grad():
        assert (compiled(x) - plain.eval()(x)).abs().max().item() <= TOL


def test_transposed_attention_fp16_large_map_stays_finite():
    """The fast path's raw q·kᵀ over N = H·W tokens overflows fp16 (max 65504) on large maps; it must normalise
    first in fp16 and match the fp32 result."""
    from anyrestore.archs.blocks import transposed_attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (1.0 + torch.rand(1, 2, 4, 70_000, generator=gen) for _ in range(3))
    temperature = torch.tensor([1.0, 2.0]).view(2, 1, 1)
    ref = transposed_attention(q, k, v, temperature)
    raw = (q.half() @ k.half().transpose(-2, -1))
    assert not torch.isfinite(raw).all()  # the overflow this guards against is real at this size
    out = transposed_attention(q.half(), k.half(), v.half(), temperature.half())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=2e-3, atol=2e-3)
    with torch.autocast("cpu", dtype=torch.float16):  # fp32 maps, fp16 matmuls: the CUDA AMP case
        out = transposed_attention(q, k, v, temperature)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=2e-3, atol=2e-3)


def test_optimize_model_fast_none_keeps_the_callers_switches():
    from anyrestore.archs import build_model
    from anyrestore.archs.fastpaths import fast_path_state, optimize_model, set_fast_paths

    model = set_fast_paths(build_model("nafnet-tiny"), False, folded_scales=True)
    optimize_model(model, fast=None, channels_last=True)
    state = fast_path_state(model)
    assert state["folded_scales"][0] == state["folded_scales"][1] > 0 and state["fused_layernorm"][0] == 0
