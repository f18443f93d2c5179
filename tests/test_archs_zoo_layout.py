"""Parameter counts, key counts and key shapes of the NAFNet/Restormer/PromptIR presets
(backbones.md §0.1, §10.1-2)."""
import pytest
import torch

from _zoo_testutil import meta_model, n_params
from anyrestore.archs import build_model
from anyrestore.archs.registry import get_preset
from anyrestore.checkpoints import export_state_dict

COUNTS = [
    ("nafnet-w64", 67_888_835, 664),
    ("nafnet-w32", 17_111_907, 664),
    ("nafnet-sidd-w64", 115_982_915, 664),
    ("nafnet-sidd-w32", 29_159_715, 664),
    ("nafnet-maskdcpt", 67_888_835, 664),
    ("restormer", 26_126_644, 494),
    ("restormer-biasfree", 26_111_668, 406),
    ("restormer-maskdcpt", 26_126_644, 494),
    ("restormer-lora", 31_771_300, 1_042),
    ("promptir", 35_592_263, 548),
    ("promptir-ram", 35_376_967, 542),
    ("promptir-maskdcpt", 35_539_290, 830),
]


@pytest.mark.parametrize("name,params,keys", COUNTS)
def test_parameter_and_key_counts(name, params, keys):
    model = meta_model(name)
    assert n_params(model) == params
    assert len(model.state_dict()) == keys


def test_nafnet_default_is_compact():
    model = meta_model("nafnet-default")
    assert 3_500_000 <= n_params(model) - n_params(model.jpeg_expert) <= 5_000_000  # the all-in-one U-Net
    assert n_params(model) <= 8_000_000  # with the JPEG expert: the budget
    assert get_preset("nafnet-default").meta.pad_multiple == 16


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_nafnet_official_and_maskdcpt_shapes():
    canon = _shapes(meta_model("nafnet-w64").state_dict())
    assert canon["intro.weight"] == (64, 3, 3, 3)
    assert canon["ending.weight"] == (3, 64, 3, 3)
    assert canon["ups.0.0.weight"] == (2048, 1024, 1, 1)
    assert canon["middle_blks.0.conv1.weight"] == (2048, 1024, 1, 1)
    assert canon["downs.3.weight"] == (1024, 512, 2, 2)
    assert canon["encoders.3.27.sca.1.weight"] == (512, 512, 1, 1)
    assert canon["encoders.0.0.beta"] == (1, 64, 1, 1)
    assert canon["decoders.3.0.conv2.weight"] == (128, 1, 3, 3)
    assert "ups.0.0.bias" not in canon
    mask = _shapes(export_state_dict(meta_model("nafnet-maskdcpt"), "maskdcpt"))
    assert len(mask) == 664 and sorted(mask.values()) == sorted(canon.values())
    assert mask["encoders.3.blocks.27.conv1.weight"] == (1024, 512, 1, 1)
    assert mask["middle_blks.blocks.0.gamma"] == (1, 1024, 1, 1)
    assert mask["decoder0.blocks.0.norm1.weight"] == (512,)
    # spec element counts per prefix (maskdcpt.md §8.3)
    per = lambda prefix: sum(torch.Size(s).numel() for k, s in mask.items() if k.startswith(prefix))
    assert per("encoders.") == 52_470_208 and per("middle_blks.") == 7_373_824
    assert per("ups.") == 2_785_280 and per("downs.") == 2_787_200
    assert [per(f"decoder{i}.") for i in range(4)] == [1_851_904, 467_200, 118_912, 30_784]


def test_restormer_shapes_and_biasfree():
    sd = _shapes(meta_model("restormer").state_dict())
    expected = {
        "patch_embed.proj.weight": (48, 3, 3, 3),
        "encoder_level1.0.attn.temperature": (1, 1, 1),
        "encoder_level1.0.attn.qkv.weight": (144, 48, 1, 1),
        "encoder_level1.0.attn.qkv_dwconv.weight": (144, 1, 3, 3),
        "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
        "encoder_level1.0.ffn.project_out.weight": (48, 127, 1, 1),
        "latent.7.attn.temperature": (8, 1, 1),
        "down1_2.body.0.weight": (24, 48, 3, 3),
        "up4_3.body.0.weight": (768, 384, 3, 3),
        "up2_1.body.0.weight": (192, 96, 3, 3),
        "reduce_chan_level3.weight": (192, 384, 1, 1),
        "reduce_chan_level2.weight": (96, 192, 1, 1),
        "output.weight": (3, 96, 3, 3),
        "refinement.3.norm2.body.bias": (96,),
    }
    for key, shape in expected.items():
        assert sd[key] == shape, key
    assert not any(k.endswith(".qkv.bias") for k in sd)
    biasfree = meta_model("restormer-biasfree").state_dict()
    assert set(biasfree) == {k for k in sd if not k.endswith("body.bias")}
    mask = _shapes(export_state_dict(meta_model("restormer-maskdcpt"), "maskdcpt"))
    assert mask["encoder_level1.blocks.0.norm1.weight"] == (48,)
    assert mask["up4_3.conv.weight"] == (768, 384, 3, 3)
    assert mask["refinement.blocks.3.ffn.dwconv.weight"] == (510, 1, 3, 3)


def test_promptir_shapes_and_variants():
    official = _shapes(meta_model("promptir").state_dict())
    expected = {
        "prompt1.prompt_param": (1, 5, 64, 64, 64),
        "prompt3.prompt_param": (1, 5, 320, 16, 16),
        "prompt2.linear_layer.weight": (5, 192),
        "prompt3.conv3x3.weight": (320, 320, 3, 3),
        "noise_level3.norm1.body.weight": (704,),
        "noise_level3.attn.temperature": (4, 1, 1),
        "noise_level3.attn.qkv.weight": (2112, 704, 1, 1),
        "noise_level3.ffn.project_in.weight": (3744, 704, 1, 1),
        "noise_level3.ffn.project_out.weight": (704, 1872, 1, 1),
        "up4_3.body.0.weight": (384, 192, 3, 3),
        "reduce_chan_level3.weight": (192, 288, 1, 1),
        "reduce_noise_level3.weight": (192, 704, 1, 1),
        "reduce_noise_level2.weight": (192, 320, 1, 1),
        "reduce_noise_level1.weight": (96, 160, 1, 1),
        "chnl_reduce3.weight": (256, 320, 1, 1),
        "reduce_noise_channel_1.weight": (48, 112, 1, 1),
        "reduce_noise_channel_2.weight": (96, 224, 1, 1),
        "reduce_noise_channel_3.weight": (192, 448, 1, 1),
    }
    for key, shape in expected.items():
        assert official[key] == shape, key
    ram = meta_model("promptir-ram").state_dict()
    unused = set(official) - set(ram)
    assert unused == {"chnl_reduce1.weight", "chnl_reduce2.weight", "chnl_reduce3.weight",
                      "reduce_noise_channel_1.weight", "reduce_noise_channel_2.weight", "reduce_noise_channel_3.weight"}
    assert sum(torch.Size(official[k]).numel() for k in unused) == 215_296
    mask = _shapes(export_state_dict(meta_model("promptir-maskdcpt"), "maskdcpt"))
    assert mask["encoder_level1.blocks.0.attn.qkv.bias"] == (144,)
    assert mask["reduce_noise_level3.bias"] == (192,)
    assert mask["output.bias"] == (3,)
    assert mask["noise_level1.norm2.weight"] == (160,)
    assert "patch_embed.proj.bias" not in mask and "prompt1.conv3x3.bias" not in mask


def test_presets_carry_metadata():
    ram = build_model("promptir-ram-tiny")
    assert ram.meta.pad_multiple == 16 and ram.meta.mean == (0.485, 0.456, 0.406)
    assert build_model("nafnet-tiny").meta.mean is None
    assert get_preset("promptir").meta.pad_multiple == 8
    assert get_preset("restormer-tiny").meta.pad_multiple == 8


def test_lora_restormer_shapes():
    sd = _shapes(meta_model("restormer-lora").state_dict())
    assert sd["patch_embed.proj.conv.weight"] == (48, 3, 3, 3)
    assert sd["patch_embed.proj.lora_A"] == (24, 9) and sd["patch_embed.proj.lora_B"] == (144, 24)
    assert sd["encoder_level1.0.attn.qkv.lora_A"] == (8, 48) and sd["encoder_level1.0.attn.qkv.lora_B"] == (144, 8)
    assert sd["encoder_level1.0.attn.qkv_dwconv.lora_A"] == (24, 432)
    assert sd["encoder_level1.0.attn.qkv_dwconv.lora_B"] == (3, 24)
    assert sd["up4_3.body.0.lora_A"] == (24, 1152) and sd["up4_3.body.0.lora_B"] == (2304, 24)
    assert not any(k.endswith(".weight") and not k.endswith(("conv.weight", "body.weight")) for k in sd)
