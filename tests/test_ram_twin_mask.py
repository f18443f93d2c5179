import torch
from torch import nn

from anyrestore.archs.registry import IMAGENET_MEAN, IMAGENET_STD, ModelMeta, build_model
from anyrestore.inference.predictor import Predictor
from anyrestore.methods.ram.masking import random_pixel_mask
from anyrestore.methods.ram.twin_mask import TwinMaskModel, twin_mask_forward


class _Smooth(nn.Module):
    """3x3 mean filter: a hidden pixel is filled from its (visible) neighbours."""

    def __init__(self) -> None:
        super().__init__()
        self.meta = ModelMeta(pad_multiple=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def forward(self, x):
        return nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_each_pixel_comes_from_the_pass_where_it_was_hidden():
    x = torch.randn(2, 3, 8, 8)
    mask = random_pixel_mask(8, 8, generator=torch.Generator().manual_seed(1))
    model = _Smooth()
    out = twin_mask_forward(model, x, mask)
    first = model(x * (1 - mask))  # mask hidden (zero token)
    second = model(x * mask)  # complement hidden
    hidden = mask.bool().expand(2, 3, 8, 8)
    assert torch.equal(out[hidden], first[hidden])
    assert torch.equal(out[~hidden], second[~hidden])
    assert not torch.equal(out, model(x))


def test_wrapper_is_deterministic_keeps_meta_and_runs_in_the_predictor():
    torch.manual_seed(0)
    inner = build_model("swinir-ram-tiny").eval()
    twin = TwinMaskModel(inner, seed=3)
    assert twin.meta == inner.meta
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a, b = twin(x), twin(x)
        mask = twin.draw_mask(1, 16, 16, x.device)
        expected = twin_mask_forward(inner, x, mask)
    assert torch.equal(a, b) and torch.allclose(a, expected)
    assert int(mask.sum()) == 128
    img = torch.rand(3, 20, 13)
    out = Predictor(twin, device="cpu", tile=0)(img)
    assert out.shape == img.shape and 0 <= out.min() and out.max() <= 1


def test_restore_cli_twin_mask_flag_runs_the_twin_mask_model(tmp_path, capsys):
    import anyrestore.cli as cli
    from anyrestore.checkpoints import load_model, save_model
    from anyrestore.io import read_image, write_image

    torch.manual_seed(0)
    ckpt = tmp_path / "ram.safetensors"
    save_model(build_model("swinir-ram-tiny"), ckpt)
    image = torch.rand(3, 24, 32)
    write_image(tmp_path / "in.png", image)
    for flag, folder in ((["--twin-mask"], "twin"), ([], "plain")):
        code = cli.main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / folder), "--model", str(ckpt),
                         "--device", "cpu", "--tile", "0", *flag])
        assert code == 0, capsys.readouterr().err
    twin, plain = read_image(tmp_path / "twin" / "in.png"), read_image(tmp_path / "plain" / "in.png")
    with torch.inference_mode():
        expected = Predictor(TwinMaskModel(load_model(ckpt)), device="cpu", tile=0)(read_image(tmp_path / "in.png"))
    assert (twin - expected).abs().max() <= 1 / 255 + 1e-6  # both written as 8-bit PNG
    assert not torch.equal(twin, plain)


def test_whole_image_stages_stay_out_of_the_twin_passes_and_run_once_in_the_predictor():
    torch.manual_seed(0)
    inner = build_model("nafnet-tiny", sharpen=True, tone_curve=True).eval()
    twin = TwinMaskModel(inner, seed=5)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mask = twin.draw_mask(1, 32, 32, x.device)
        local = twin_mask_forward(inner.forward_local, x, mask)
        assert torch.equal(twin.forward_local(x), local)
        assert torch.allclose(twin(x), inner.global_stage(x, local))
        assert not torch.allclose(twin(x), twin_mask_forward(inner, x, mask))  # stages inside the passes differ
    predictor = Predictor(twin, device="cpu", tile=0)
    assert predictor.global_stage is not None
    with torch.no_grad():
        assert torch.allclose(predictor(x[0]), twin(x)[0], atol=1e-6)  # 32² needs no padding at multiple 16
