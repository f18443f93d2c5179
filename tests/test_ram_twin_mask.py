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
