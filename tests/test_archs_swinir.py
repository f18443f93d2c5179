"""SwinIR, RAM-SwinIR and MaskDCPT-SwinIR: counts, key layouts, families, flags, masking, spandrel parity."""
import pytest
import torch

from anyrestore.archs import build_arch, build_model
from anyrestore.archs.fastpaths import set_fast_paths
from anyrestore.archs.registry import FAMILIES
from anyrestore.archs.swinir import relative_position_index, shift_attention_mask
from anyrestore.errors import CheckpointMismatchError

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")  # raised inside the spandrel reference

TINY = dict(img_size=32, embed_dim=24, depths=(2, 2), num_heads=(2, 2), drop_path_rate=0.0)
TINY_DCPT = dict(img_size=32, embed_dim=24, depths=(1,) * 6, num_heads=(6,) * 6)


def family(arch, name):
    return next(f for f in FAMILIES if f.arch == arch and f.family == name)


def randomize(model, seed=0):
    """Seeded random values for every parameter (LayerNorm weights around 1); default init would hide errors."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if ".norm" in f".{name}" and name.endswith("weight") else 0.05 * noise)
    return model.eval()


def image(*hw, batch=1, seed=1):
    return torch.rand(batch, 3, *hw, generator=torch.Generator().manual_seed(seed))


def meta_model(name, **kw):
    with torch.device("meta"):
        return build_model(name, **kw)


def owner_layers(model):
    """ram.md §5.1: owners of parameters in registration order, consecutive duplicates collapsed."""
    names = []
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner and (not names or names[-1] != owner):
            names.append(owner)
    return names


# ---------------------------------------------------------------- counts and layouts (meta device)

@pytest.mark.parametrize("name,kw,params,canon_keys", [
    ("swinir-denoise", {}, 11_504_163, 526),
    ("swinir-denoise", {"in_chans": 1}, 11_497_681, 526),
    ("swinir-jpeg", {}, 11_492_067, 526),
    ("swinir-jpeg", {"in_chans": 1}, 11_485_585, 526),
    ("swinir-ram", {}, 11_512_131, 527),
    ("swinir-maskdcpt", {}, 11_455_563, 454),
])
def test_parameter_counts(name, kw, params, canon_keys):
    model = meta_model(name, **kw)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == canon_keys  # attn_mask buffers are non-persistent


def test_official_export_layout():
    sd = family("swinir", "official").from_canonical(meta_model("swinir-denoise").state_dict())
    assert len(sd) == 544
    assert sum(k.endswith(("attn_mask", "relative_position_index")) for k in sd) == 54
    assert sd["conv_first.weight"].shape == (180, 3, 3, 3)
    assert sd["layers.5.residual_group.blocks.5.attn.relative_position_bias_table"].shape == (225, 6)
    assert sd["layers.0.residual_group.blocks.0.attn.relative_position_index"].shape == (64, 64)
    assert sd["layers.2.residual_group.blocks.3.attn_mask"].shape == (256, 64, 64)
    assert "layers.2.residual_group.blocks.2.attn_mask" not in sd
    assert sd["layers.0.residual_group.blocks.0.attn.qkv.weight"].shape == (540, 180)
    assert sd["conv_last.weight"].shape == (3, 180, 3, 3)
    jpeg = family("swinir", "official").from_canonical(meta_model("swinir-jpeg", in_chans=1).state_dict())
    assert len(jpeg) == 544
    assert jpeg["layers.0.residual_group.blocks.1.attn_mask"].shape == (324, 49, 49)
    assert jpeg["layers.0.residual_group.blocks.1.attn.relative_position_bias_table"].shape == (169, 6)
    assert jpeg["conv_last.weight"].shape == (1, 180, 3, 3)


def test_ram_export_layout():
    sd = family("ram_swinir", "ram").from_canonical(meta_model("swinir-ram").state_dict())
    assert len(sd) == 545
    assert sum(k.endswith(("attn_mask", "relative_position_index")) for k in sd) == 54
    assert next(iter(sd)) == "mask_token" and sd["mask_token"].shape == (1, 3, 64, 64)
    assert sd["conv_first.weight"].shape == (180, 3, 1, 1)
    assert sd["layers.4.residual_group.blocks.5.attn_mask"].shape == (64, 64, 64)


def test_maskdcpt_export_layout():
    sd = family("maskdcpt_swinir", "maskdcpt").from_canonical(meta_model("swinir-maskdcpt").state_dict())
    assert len(sd) == 454
    assert not any("relative_position" in k or "attn_mask" in k for k in sd)
    prefixes = sorted({k.split(".residual_group")[0] for k in sd if ".residual_group" in k})
    assert prefixes == ["decode_layers0", "decode_layers1", "decode_layers2",
                        "encode_layers.0", "encode_layers.1", "encode_layers.2"]
    assert sd["decode_layers2.conv.weight"].shape == (180, 180, 3, 3)


def test_ram_layer_enumeration():
    model = meta_model("swinir-ram")
    names = owner_layers(model)
    assert len(names) == 263
    assert names[:9] == ["conv_first", "patch_embed.norm"] + [
        f"layers.0.residual_group.blocks.0.{n}" for n in ("norm1", "attn", "attn.qkv", "attn.proj", "norm2",
                                                          "mlp.fc1", "mlp.fc2")]
    assert [names[44 + 43 * i] for i in range(6)] == [f"layers.{i}.conv" for i in range(6)]
    assert names[-3:] == ["norm", "conv_after_body", "conv_last"]
    assert not model.mask_token.requires_grad


# ---------------------------------------------------------------- attention helpers

def test_relative_position_index_formula():
    w = 5
    index = relative_position_index(w)
    for i in range(w * w):
        for j in range(w * w):
            d_row, d_col = i // w - j // w, i % w - j % w
            assert index[i, j] == (d_row + w - 1) * (2 * w - 1) + (d_col + w - 1)


def test_shift_mask_against_brute_force():
    h, w_img, win, s = 16, 24, 8, 4
    mask = shift_attention_mask(h, w_img, win, s)

    def region(r, c):
        band = lambda v, n: 0 if v < n - win else (1 if v < n - s else 2)  # noqa: E731
        return band(r, h) * 3 + band(c, w_img)

    nw_col = w_img // win
    assert mask.shape == ((h // win) * nw_col, win * win, win * win)
    for k in range(mask.shape[0]):
        r0, c0 = (k // nw_col) * win, (k % nw_col) * win
        pos = [(r0 + t // win, c0 + t % win) for t in range(win * win)]
        expected = torch.tensor([[0.0 if region(*a) == region(*b) else -100.0 for b in pos] for a in pos])
        assert torch.equal(mask[k], expected)


def test_mask_cache_matches_fresh_and_buffer():
    model = build_arch("swinir", **TINY)
    block = model.layers[0].residual_group.blocks[1]
    assert torch.equal(block.attn_mask, shift_attention_mask(32, 32, 8, 4))
    cached = block._mask(48, 40, torch.device("cpu"))
    assert torch.equal(cached, shift_attention_mask(48, 40, 8, 4))
    assert block._mask(48, 40, torch.device("cpu")) is cached
    assert model.layers[1].residual_group.blocks[1]._mask(48, 40, torch.device("cpu")) is cached  # shared


# ---------------------------------------------------------------- forward behaviour

@pytest.mark.parametrize("arch", ["swinir", "ram_swinir"])
def test_odd_sizes_and_gradients(arch):
    model = randomize(build_arch(arch, **TINY)).train()
    x = image(50, 61, batch=2)
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    if arch == "ram_swinir":
        assert model.mask_token.grad is None


def test_maskdcpt_needs_window_multiple():
    model = randomize(build_arch("maskdcpt_swinir", **TINY))
    assert model(image(32, 40)).shape == (1, 3, 32, 40)
    with pytest.raises(ValueError, match="multiple of the window 8"):
        model(image(50, 61))


def test_encode_decode_contract_is_bitwise_forward():
    for arch in ("swinir", "ram_swinir", "maskdcpt_swinir"):
        model = randomize(build_arch(arch, **TINY))
        x = image(32, 40)
        with torch.no_grad():
            assert torch.equal(model.decode_head(model.encode(x), x, True), model(x))


@pytest.mark.parametrize("flag,value", [("rel_pos_bias", False), ("shift_mask", False), ("global_residual", False),
                                        ("long_skip", "normed"), ("mean_shift", False)])
def test_numerics_flags_change_output(flag, value):
    base = randomize(build_arch("swinir", **TINY))
    other = build_arch("swinir", **TINY, **{flag: value}).eval()
    ours = other.state_dict()
    ours.update({k: v for k, v in base.state_dict().items() if k in ours})
    other.load_state_dict(ours)
    x = image(32, 32)
    with torch.no_grad():
        assert (base(x) - other(x)).abs().max() > 1e-4


def test_maskdcpt_equals_official_with_zero_bias_and_no_mask():
    """maskdcpt.md §7: MaskDCPT-SwinIR ≡ upstream SwinIR with zero bias tables and the shift mask replaced by 0."""
    dcpt = randomize(build_arch("maskdcpt_swinir", **TINY))
    official = build_arch("swinir", **TINY, shift_mask=False).eval()
    sd = official.state_dict()
    sd.update(dcpt.state_dict())
    for key in sd:
        if key.endswith("relative_position_bias_table"):
            sd[key] = torch.zeros_like(sd[key])
    official.load_state_dict(sd)
    x = image(32, 40)
    with torch.no_grad():
        assert torch.equal(dcpt(x), official(x))


def test_ram_input_masking():
    model = randomize(build_arch("ram_swinir", **TINY))
    x = image(36, 28, batch=2)
    with torch.no_grad():
        plain = model(x)
        assert torch.equal(model(x, mask=torch.zeros(2, 36, 28)), plain)
        mask = (torch.rand(2, 36, 28, generator=torch.Generator().manual_seed(3)) < 0.5).float()
        hidden = model(x, mask=mask)
        manual = model(torch.where(mask.bool().unsqueeze(1), torch.zeros(()), x))
        assert torch.equal(hidden, manual)
        assert not torch.equal(hidden, plain)
        token = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
        assert torch.allclose(model(x, mask=torch.ones(2, 36, 28), mask_token=token),
                              model(token.expand(2, 3, 36, 28)), atol=1e-6)
    with pytest.raises(ValueError, match="mask must be"):
        model(x, mask=torch.zeros(2, 28, 36))


def test_mask_points_hooks_are_noops_with_all_visible_mask():
    model = randomize(build_arch("maskdcpt_swinir", **TINY))
    import re

    x = image(32, 32)
    with torch.no_grad():
        plain = model(x)
    handles, hits = [], []
    rx = re.compile("|".join(f"(?:{p})" for p in model.MASK_POINTS["post"]))
    for name, module in model.named_modules():
        if rx.fullmatch(name):
            handles.append(module.register_forward_hook(lambda m, i, o: (hits.append(1), o * torch.ones_like(o))[1]))
    with torch.no_grad():
        hooked = model(x)
    for h in handles:
        h.remove()
    assert torch.equal(hooked, plain)
    # conv_first, patch_embed.norm, final norm, conv_after_body + per RSTB: (block, norm1, norm2) x 2 + conv
    assert len(hits) == 4 + 2 * (2 * 3 + 1)


# ---------------------------------------------------------------- families

@pytest.mark.parametrize("arch,name,kw", [
    ("swinir", "official", TINY),
    ("swinir", "official", dict(TINY, window_size=7, img_size=28, img_range=255.0, in_chans=1)),
    ("ram_swinir", "ram", TINY),
    ("maskdcpt_swinir", "maskdcpt", TINY_DCPT),
])
def test_family_round_trip(arch, name, kw):
    model = randomize(build_arch(arch, **kw))
    fam = family(arch, name)
    exported = fam.from_canonical(model.state_dict())
    swin_families = [f for f in FAMILIES if f.arch in ("swinir", "ram_swinir", "maskdcpt_swinir")]
    assert [f for f in swin_families if f.detect(exported)] == [fam]
    inferred = fam.infer_kwargs(exported)
    assert inferred["embed_dim"] == kw["embed_dim"]
    assert list(inferred["depths"]) == list(kw["depths"]) and list(inferred["num_heads"]) == list(kw["num_heads"])
    assert inferred["window_size"] == kw.get("window_size", 8) and inferred["in_chans"] == kw.get("in_chans", 3)
    rebuilt = build_arch(arch, **inferred).eval()
    rebuilt.load_state_dict(fam.to_canonical(exported), strict=True)
    x = image(24, 40) if kw.get("in_chans", 3) == 3 else image(24, 40)[:, :1]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_official_family_infers_jpeg_range_and_img_size():
    sd = family("swinir", "official").from_canonical(meta_model("swinir-jpeg").state_dict())
    kw = family("swinir", "official").infer_kwargs(sd)
    assert (kw["window_size"], kw["img_size"], kw["img_range"]) == (7, 126, 255.0)


def test_corrupted_relative_position_index_is_rejected():
    sd = dict(build_arch("swinir", **TINY).state_dict())
    key = "layers.0.residual_group.blocks.0.attn.relative_position_index"
    sd[key] = sd[key].flip(0)
    with pytest.raises(CheckpointMismatchError, match="relative-position index"):
        family("swinir", "official").to_canonical(sd)


# ---------------------------------------------------------------- spandrel parity

@pytest.mark.parity
@pytest.mark.parametrize("window,img_range,in_chans", [(8, 1.0, 3), (7, 255.0, 1)])
def test_spandrel_parity_whole_swinir(window, img_range, in_chans):
    pytest.importorskip("spandrel")
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR as RefSwinIR

    img = 4 * window
    ref = randomize(RefSwinIR(img_size=img, in_chans=in_chans, embed_dim=24, depths=[2, 2], num_heads=[2, 2],
                              window_size=window, mlp_ratio=2.0, img_range=img_range, upsampler="",
                              resi_connection="1conv"))
    fam = family("swinir", "official")
    ref_sd = ref.state_dict()
    assert fam.detect(ref_sd)
    ours = build_arch("swinir", **fam.infer_kwargs(ref_sd)).eval()
    ours.load_state_dict(fam.to_canonical(ref_sd), strict=True)
    back = RefSwinIR(img_size=img, in_chans=in_chans, embed_dim=24, depths=[2, 2], num_heads=[2, 2],
                     window_size=window, mlp_ratio=2.0, img_range=img_range, upsampler="",
                     resi_connection="1conv").eval()
    back.load_state_dict(fam.from_canonical(ours.state_dict(), img_size=img), strict=True)  # upstream-strict
    for hw in ((img, img), (50, 61)):
        x = image(*hw, batch=2)[:, :in_chans]
        with torch.no_grad():
            out, expected = ours(x), ref(x)
            assert out.shape == x.shape
            torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
            assert (out - expected).abs().max() <= 1e-4
            assert torch.equal(back(x), expected)


@pytest.mark.parity
def test_spandrel_parity_ram_rstb():
    pytest.importorskip("spandrel")
    from spandrel.architectures.SwinIR.__arch.SwinIR import RSTB as RefRSTB

    model = randomize(build_arch("ram_swinir", img_size=64, embed_dim=24, depths=(2, 2), num_heads=(2, 2)))
    ref = RefRSTB(dim=24, input_resolution=(64, 64), depth=2, num_heads=2, window_size=8, mlp_ratio=2.0,
                  qkv_bias=True, qk_scale=None, img_size=64, patch_size=1, resi_connection="1conv").eval()
    sd = {k[len("layers.1."):]: v for k, v in model.state_dict().items() if k.startswith("layers.1.")}
    sd["residual_group.blocks.1.attn_mask"] = shift_attention_mask(64, 64, 8, 4)
    ref.load_state_dict(sd, strict=True)
    tokens = torch.randn(2, 48 * 40, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for size in ((48, 40), (64, 64)):
            t = tokens if size == (48, 40) else torch.randn(1, 64 * 64, 24)
            assert (model.layers[1](t, size) - ref(t, size)).abs().max() <= 1e-4


@pytest.mark.parity
def test_spandrel_autodetects_our_official_export():
    pytest.importorskip("spandrel")
    from spandrel import ModelLoader

    model = randomize(build_arch("swinir", **dict(TINY, window_size=7, img_size=28, img_range=255.0)))
    exported = family("swinir", "official").from_canonical(model.state_dict(), img_size=28)
    descriptor = ModelLoader().load_from_state_dict(exported)
    hp = descriptor.model.hyperparameters
    assert (hp["img_size"], hp["window_size"], hp["embed_dim"], hp["img_range"]) == (28, 7, 24, 255.0)
    x = image(40, 33)
    with torch.no_grad():
        ref = descriptor.model.eval()(x)
        assert (model(x) - ref).abs().max() <= 1e-5  # fast paths on (the default): equal up to rounding
        assert torch.equal(ref, set_fast_paths(model, False)(x))  # the plain path is the official formula, bitwise


@pytest.mark.parametrize("arch,name,kw", [
    ("swinir", "official", TINY),
    ("ram_swinir", "ram", TINY),
    ("maskdcpt_swinir", "maskdcpt", TINY_DCPT),
])
def test_loader_reads_family_files(tmp_path, arch, name, kw):
    from anyrestore.checkpoints import load_model

    model = randomize(build_arch(arch, **kw))
    exported = family(arch, name).from_canonical(model.state_dict())
    path = tmp_path / f"{name}.pth"
    torch.save({"params": {k: v.clone() for k, v in exported.items()}}, path)
    loaded = load_model(path)
    assert loaded.arch_name == arch and loaded.checkpoint_info["family"] == name
    x = image(32, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parity
@pytest.mark.parametrize("preset,kw", [("swinir-denoise", {}), ("swinir-jpeg", {"in_chans": 1}), ("swinir-ram", {})])
def test_full_size_export_matches_spandrel_key_layout(preset, kw):
    """Names, shapes and dtypes of the exported full-size dicts equal an upstream-structured model's (reference built on CPU)."""
    pytest.importorskip("spandrel")
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR as RefSwinIR

    model = meta_model(preset, **kw)
    window, img = model.window_size, model.img_size[0]
    ref = RefSwinIR(img_size=img, in_chans=model.in_chans, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6,
                    window_size=window, mlp_ratio=2.0, img_range=model.img_range, upsampler="",
                    resi_connection="1conv")  # CPU: the reference calls .item() at construction
    expected = {k: (tuple(v.shape), v.dtype) for k, v in ref.state_dict().items()}
    if preset == "swinir-ram":
        expected["conv_first.weight"] = ((180, 3, 1, 1), torch.float32)
        expected["mask_token"] = ((1, 3, 64, 64), torch.float32)
        exported = family("ram_swinir", "ram").from_canonical(model.state_dict())
    else:
        exported = family("swinir", "official").from_canonical(model.state_dict())
    assert {k: (tuple(v.shape), v.dtype) for k, v in exported.items()} == expected


# ---------------------------------------------------------------- golden outputs (backbones.md §10.9)

GOLDEN_DIR = __import__("pathlib").Path(__file__).parent / "data" / "golden"
GOLDEN = {"swinir": TINY, "ram_swinir": TINY, "maskdcpt_swinir": TINY_DCPT}


def checksum(y):
    flat = y.flatten().double()
    picks = torch.linspace(0, flat.numel() - 1, 8).long()
    return {"sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(), "samples": flat[picks].tolist()}


@pytest.mark.parametrize("arch", sorted(GOLDEN))
def test_golden_output(arch):
    """Seeded random tiny model on a seeded 32x32 input; set ANYRESTORE_UPDATE_GOLDEN=1 to rewrite the files."""
    import json
    import os

    model = randomize(build_arch(arch, **GOLDEN[arch]), seed=7)
    with torch.no_grad():
        got = checksum(model(image(32, 32, seed=11)))
    path = GOLDEN_DIR / f"{arch}.json"
    if os.environ.get("ANYRESTORE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"arch": arch, "kwargs": GOLDEN[arch], **got}, indent=1))
    ref = json.loads(path.read_text())
    assert got["sum"] == pytest.approx(ref["sum"], abs=1e-5 * max(1.0, abs(ref["sum"])))
    assert got["abs_sum"] == pytest.approx(ref["abs_sum"], abs=1e-5 * ref["abs_sum"])
    assert got["samples"] == pytest.approx(ref["samples"], abs=1e-5)
