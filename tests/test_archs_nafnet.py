"""NAFNet / NAFNet-Local behaviour: shapes, gradients, TLC, numerics flags, MaskDCPT hook points
(backbones.md §2, §10)."""
import re

import pytest
import torch
import torch.nn.functional as F

from _zoo_testutil import image, randomize_
from anyrestore.archs import build_model
from anyrestore.archs.fastpaths import set_fast_paths
from anyrestore.archs.nafnet import LocalAvgPool2d


def tiny(**overrides):
    return randomize_(build_model("nafnet-tiny", **overrides)).eval()


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_odd_size_keeps_shape(pad_mode):
    model = tiny(pad_mode=pad_mode)
    with torch.no_grad():
        out = model(image(37, 53))
    assert out.shape == (1, 3, 37, 53)
    assert torch.isfinite(out).all()


def test_default_preset_forward_odd_size():
    model = build_model("nafnet-default").eval()
    with torch.no_grad():
        out = model(image(37, 53))
    assert out.shape == (1, 3, 37, 53)


def test_gradients_reach_every_parameter():
    model = tiny().train()
    model(image(32, 32)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_default_init_is_identity():
    # beta = gamma = 0 makes every block the identity, so the net is intro -> ... only through skips; check one block
    block = build_model("nafnet-tiny").encoders[0][0]
    x = torch.randn(1, 8, 16, 16)
    assert torch.equal(block(x), x)


def test_encode_decode_head_equals_forward():
    model = tiny()
    x = image(30, 45)
    with torch.no_grad():
        assert torch.equal(model.decode_head(model.encode(x), x, True), model(x))
        no_res = model.decode_head(model.encode(x), x, False)
    assert no_res.shape == x.shape and not torch.equal(no_res, model(x))


def test_numerics_flags_change_output():
    x = image(40, 40)
    with torch.no_grad():
        base = tiny()(x)
        eps = tiny(ln_eps=1e-5)(x)
        reflect = tiny(pad_mode="reflect")(x)
        aligned = image(32, 48)
        assert torch.equal(tiny()(aligned), tiny(pad_mode="reflect")(aligned))  # no padding needed: identical
    assert (base - eps).abs().max() > 1e-7
    assert (base - reflect).abs().max() > 1e-5


def _box_mean_float64(x, kernel):
    # independent reference: direct stride-1 window means in float64, replicate-padded to full size (§2.2)
    h, w = x.shape[-2:]
    kh, kw = min(kernel[0], h), min(kernel[1], w)
    out = F.avg_pool2d(x.double(), (kh, kw), stride=1)
    dh, dw = h - out.shape[-2], w - out.shape[-1]
    return F.pad(out, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate").float()


@pytest.mark.parametrize("size,kernel", [((20, 31), (8, 12)), ((9, 9), (16, 16)), ((12, 7), (5, 9)), ((40, 3), (7, 2))])
def test_local_pool_matches_integral_image(size, kernel):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    out = LocalAvgPool2d(kernel)(x)
    if kernel[0] >= size[0] and kernel[1] >= size[1]:  # covers the map: the plain global pool, (B,C,1,1)
        torch.testing.assert_close(out, x.mean((-2, -1), keepdim=True), rtol=0, atol=1e-6)
    else:
        assert out.shape == x.shape
        torch.testing.assert_close(out, _box_mean_float64(x, kernel), rtol=0, atol=1e-5)


def test_tlc_kernels_follow_train_size():
    model = build_model("nafnet-w32", train_size=256)
    kernels = [model.encoders[i][0].sca[0].kernel_size for i in range(4)]
    assert kernels == [(384, 384), (192, 192), (96, 96), (48, 48)]
    assert model.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert model.decoders[3][0].sca[0].kernel_size == (384, 384)


def test_nafnet_local_equals_nafnet_up_to_one_and_a_half_train_size():
    plain = randomize_(build_model("nafnet-tiny"), std=0.3).eval()
    local = build_model("nafnet_local", width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1),
                        train_size=32).eval()
    local.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(local(image(48, 40)), plain(image(48, 40)))
        big = image(80, 72)
        assert (local(big) - plain(big)).abs().max() > 1e-6


def _install_mask_hooks(model, mask):
    """Multiply the inputs ('pre') / outputs ('post') of the model's MASK_POINTS modules by the mask (§3.2 rule)."""

    def scale(t):
        s = t.shape[-2] // mask.shape[-2]
        return t * mask.repeat_interleave(s, -2).repeat_interleave(s, -1).to(t.dtype)

    handles = []
    for name, module in model.named_modules():
        if any(re.fullmatch(p, name) for p in model.MASK_POINTS["pre"]):
            handles.append(module.register_forward_pre_hook(lambda m, args: (scale(args[0]),) + args[1:]))
        if any(re.fullmatch(p, name) for p in model.MASK_POINTS["post"]):
            handles.append(module.register_forward_hook(lambda m, args, out: scale(out)))
    return handles


def test_maskdcpt_hook_points_all_visible_is_exact_noop():
    model = tiny(ln_eps=1e-5, pad_mode="reflect")
    set_fast_paths(model, True, folded_scales=False)  # hooked blocks run unfolded: compare like with like
    x = image(32, 32)
    with torch.no_grad():
        ref = model(x)
        handles = _install_mask_hooks(model, torch.ones(1, 1, 2, 2))
        assert len(handles) == 1 + 1 + 3 * 9  # intro pre+post, 9 blocks x (norm1, norm2, conv3)
        same = model(x)
        for h in handles:
            h.remove()
        handles = _install_mask_hooks(model, torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))
        masked = model(x)
        for h in handles:
            h.remove()
    assert torch.equal(same, ref)
    assert (masked - ref).abs().max() > 1e-3


def test_whole_image_limit_is_a_model_setting_the_predictor_reads():
    from anyrestore.inference import Predictor

    assert build_model("nafnet-tiny").whole_image_pixels is None
    model = build_model("nafnet-tiny", whole_image_pixels=100 * 100)
    assert Predictor(model).whole_image_pixels == 100 * 100 and Predictor(model).default_tile == 100
    with pytest.raises(ValueError, match="whole_image_pixels must be at least 4096"):
        build_model("nafnet-tiny", whole_image_pixels=63 * 63)


def test_large_image_in_bands_of_rows_equals_the_whole_block(monkeypatch):
    from anyrestore.archs import nafnet

    block = randomize_(nafnet.NAFBlock(8), seed=3, std=0.3).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        block.beta.fill_(1.0)  # trained blocks have β, γ of order 1; random small ones would hide the bands' seams
        block.gamma.fill_(1.0)
    x = torch.randn(1, 8, 80, 96).contiguous(memory_format=torch.channels_last)
    calls = []
    original = nafnet.NAFBlock._forward_in_bands
    monkeypatch.setattr(nafnet.NAFBlock, "_forward_in_bands", lambda self, t: calls.append(t.shape[-2:]) or
                        original(self, t))
    with torch.inference_mode():
        whole = block(x)
        assert calls == []  # 80x96 is below twice the default band
        monkeypatch.setattr(nafnet, "BAND_PIXELS", 5 * 96)  # bands of 5 rows
        banded = block(x)
    assert calls == [(80, 96)] and whole.abs().mean() > 0.5
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    calls.clear()
    with torch.enable_grad():
        block(x)  # training keeps the plain block: autograd would hold every band anyway
    assert calls == []
    model = randomize_(tiny(pad_mode="reflect"), seed=3).eval()  # and a whole U-Net, bands at two levels
    y = image(80, 96)
    with torch.inference_mode():
        banded = model(y)
        monkeypatch.setattr(nafnet, "BAND_PIXELS", 1 << 16)
        torch.testing.assert_close(banded, model(y), rtol=0, atol=1e-5)
    assert (40, 48) in calls
