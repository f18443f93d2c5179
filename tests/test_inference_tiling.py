import pytest
import torch
from torch import nn

from anyrestore.archs.registry import IMAGENET_MEAN, IMAGENET_STD, ModelMeta
from anyrestore.errors import ConfigError
from anyrestore.inference import InferenceError, Predictor, pad_to_multiple, tiled_apply
from anyrestore.inference.tiling import blend_weights, fitted_tile, is_out_of_memory, tile_starts
from anyrestore.metrics import psnr


class Identity(nn.Module):
    def __init__(self, multiple=1, meta=None):
        super().__init__()
        self.meta = meta or ModelMeta(pad_multiple=multiple)
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x.clone()


class LocalNet(nn.Module):
    """Three 3x3 convolutions: receptive-field radius 3, far inside a 32-pixel overlap."""

    def __init__(self):
        super().__init__()
        self.meta = ModelMeta(pad_multiple=8)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 16, 3, padding=1),
                                  nn.GELU(), nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, x):
        return x + 0.3 * self.body(x)


class PooledAttentionNet(nn.Module):
    """NAFNet-style simplified channel attention: features scaled by a 1x1 conv of their global average."""

    def __init__(self):
        super().__init__()
        self.meta = ModelMeta(pad_multiple=16)
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.sca = nn.Conv2d(16, 16, 1)
        self.b = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.a(x))
        f = f * (3.0 * self.sca(f.mean(dim=(2, 3), keepdim=True)))
        return x + 0.3 * self.b(f)


class Pointwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.meta = ModelMeta(pad_multiple=8)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


class OOMOnce(nn.Module):
    """Raises an out-of-memory error on inputs larger than ``limit`` pixels per side, or on the first call."""

    def __init__(self, inner, *, limit=None, first_call=False, error=None):
        super().__init__()
        self.inner, self.limit, self.first_call = inner, limit, first_call
        self.meta = inner.meta
        self.calls = 0
        self.error = error or (lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))

    def forward(self, x):
        self.calls += 1
        if (self.first_call and self.calls == 1) or (self.limit and max(x.shape[-2:]) > self.limit):
            raise self.error()
        return self.inner(x)


@pytest.fixture(scope="module")
def image():
    # a smooth, structured image (not white noise) of an awkward size
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 19, 29, generator=g)
    img = nn.functional.interpolate(base, size=(300, 451), mode="bicubic", align_corners=False)
    return (img + 0.05 * torch.randn(img.shape, generator=g)).clamp(0, 1)[0]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)  # model initialisation only


@pytest.mark.parametrize("h,w,m", [(1, 1, 8), (7, 13, 8), (1000, 3, 16), (5, 5, 1), (16, 32, 16)])
def test_pad_to_multiple_shapes_and_content(h, w, m):
    x = torch.rand(1, 2, h, w)
    y = pad_to_multiple(x, m)
    assert y.shape[-2] % m == 0 and y.shape[-1] % m == 0
    assert y.shape[-2] - h < m and y.shape[-1] - w < m
    assert torch.equal(y[..., :h, :w], x)


def test_pad_reflect_then_replicate():
    x = torch.arange(3.0).view(1, 1, 1, 3)  # width 3 -> 16: reflect 2, then replicate 11
    y = pad_to_multiple(x, 16)
    assert y[0, 0, 0].tolist() == [0, 1, 2, 1, 0] + [0] * 11
    x = torch.arange(7.0).view(1, 1, 7, 1).expand(1, 1, 7, 8)
    assert pad_to_multiple(x, 8)[0, 0, 7, 0] == 5  # row 7 mirrors row 5


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (1000, 3)])
def test_predictor_odd_sizes_round_trip(h, w):
    x = torch.rand(3, h, w)
    model = Identity(multiple=16)
    y = Predictor(model, tile=0)(x)
    assert y.shape == x.shape and torch.equal(y, x)
    assert all(s[-1] % 16 == 0 and s[-2] % 16 == 0 for s in model.shapes)


def test_tile_starts_rule():
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert tile_starts(64, 64, 8) == [0]
    assert tile_starts(30, 64, 8) == [0]


def test_fitted_tile_keeps_the_number_of_tiles_on_fewer_pixels():
    def tiles(h, w, side, overlap=32):
        return len(tile_starts(h, min(side, h), overlap)) * len(tile_starts(w, min(side, w), overlap))

    assert fitted_tile(1024, 1024, 256, 32, 16) == 240  # 5 x 5 tiles either way; 224 would need 6 x 6
    for h, w in [(1024, 1024), (720, 1280), (3008, 4000), (304, 456), (96, 2000)]:
        side = fitted_tile(h, w, 256, 32, 16)
        assert side <= 256 and side % 16 == 0
        assert tiles(h, w, side) == tiles(h, w, 256)
        assert side == 256 or tiles(h, w, side - 16) > tiles(h, w, 256)  # the smallest such side


def test_auto_mode_tiles_at_the_fitted_side_and_explicit_tiles_stay_as_given():
    image = torch.rand(3, 200, 330)
    pred = Predictor(LocalNet(), max_whole_pixels=0)
    pred(image)
    assert pred.last_run["tile"] == fitted_tile(200, 336, 256, 32, 8) < 256
    pred = Predictor(LocalNet(), tile=256)
    pred(image)
    assert pred.last_run["tile"] == 256


def test_every_pixel_covered_and_weights_positive():
    x = torch.zeros(1, 1, 96, 160)
    out = tiled_apply(lambda t: torch.ones_like(t), x, tile=48, overlap=16, blend="feather")
    assert torch.allclose(out, torch.ones_like(out))
    w = blend_weights(48, 48, 16, "feather", top=True, bottom=True, left=True, right=False)
    assert w.min() > 0 and w[0, 0, 24, -1] == 1 and w[0, 0, 0, 24] < 0.01


def test_tile_covering_image_is_bit_exact(image):
    model = LocalNet()
    whole = Predictor(model, tile=0)(image)
    assert torch.equal(Predictor(model, tile=512)(image), whole)


@pytest.mark.parametrize("blend", ["feather", "mean"])
def test_local_model_tiled_equals_whole(image, blend):
    model = LocalNet()
    whole = Predictor(model, tile=0)(image)
    for tile in (64, 128):
        tiled = Predictor(model, tile=tile, overlap=32, blend=blend)(image)
        assert psnr(tiled, whole, protocol="skimage") >= 50


def test_global_pooling_model_seams_invisible(image):
    model = PooledAttentionNet()
    whole = Predictor(model, tile=0)(image)
    pred = Predictor(model, max_whole_pixels=0)  # auto mode forced to tile at the CPU default (256, overlap 32)
    tiled = pred(image)
    assert pred.last_run == {"mode": "tiled", "tile": 256, "overlap": 32, "blend": "feather"}
    score = psnr(tiled, whole, protocol="skimage")
    assert 40 <= score < 100  # the model really is global (tiles differ), but the seams stay invisible


def test_model_named_whole_image_limit_runs_whole_up_to_it_and_tiles_of_that_area_above(image):
    model = PooledAttentionNet()
    whole = Predictor(model, tile=0)(image)
    h, w = image.shape[-2:]
    model.whole_image_pixels = h * w  # the Predictor's own CPU limit (0 here) would tile
    pred = Predictor(model, max_whole_pixels=0)
    assert torch.equal(pred(image), whole) and pred.last_run["mode"] == "whole"
    model.whole_image_pixels = h * w - 1  # one pixel short: tiles of a side of its square root, fitted
    pred = Predictor(model, max_whole_pixels=10**9)
    tiled = pred(image)
    side = int((h * w - 1) ** 0.5)  # 367, rounded down to the pad multiple 16; the padded image is 304x464
    assert pred.last_run["mode"] == "tiled" and pred.last_run["tile"] == fitted_tile(304, 464, 352, 32, 16)
    assert not torch.equal(tiled, whole)  # the pooled statistics differ per tile
    assert Predictor(model, tile=64)(image).shape == image.shape and pred.default_tile == side


def test_pointwise_model_mean_blend_exact(image):
    model = Pointwise()
    whole = Predictor(model, tile=0)(image)
    tiled = Predictor(model, tile=64, overlap=16, blend="mean")(image)
    assert (tiled - whole).abs().max() < 1e-6


def test_injected_oom_halves_tile(image):
    model = OOMOnce(LocalNet(), first_call=True)
    pred = Predictor(model, tile=256)
    out = pred(image)
    torch.manual_seed(0)
    expected = Predictor(LocalNet(), tile=128)(image)
    assert torch.equal(out, expected)
    assert pred.last_run["tile"] == 128
    pred(image)  # the working tile is remembered for later images
    assert pred.last_run["tile"] == 128


def test_oom_in_whole_mode_falls_back_to_tiles(image):
    model = OOMOnce(LocalNet(), limit=200,
                    error=lambda: RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    pred = Predictor(model)  # auto; 300x451 is under the CPU whole-image limit, so whole is tried first
    out = pred(image)
    assert pred.last_run["mode"] == "tiled" and pred.last_run["tile"] == 120  # 248 (256 fitted) failed too, halved
    assert out.shape == image.shape


def test_oom_at_smallest_tile_is_a_clear_error(image):
    pred = Predictor(OOMOnce(LocalNet(), limit=8), tile=128)
    with pytest.raises(InferenceError, match="out of memory even with 64x64"):
        pred(image)


def test_other_errors_are_not_swallowed(image):
    pred = Predictor(OOMOnce(LocalNet(), first_call=True, error=lambda: RuntimeError("shape mismatch")), tile=128)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        pred(image)
    assert not is_out_of_memory(ValueError("out of memory"))


def test_normalisation_round_trip(image):
    meta = ModelMeta(pad_multiple=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model = Identity(meta=meta)
    out = Predictor(model, tile=0)(image)
    assert (out - image).abs().max() < 1e-6
    seen = []
    model.forward = lambda x: seen.append(x.mean().item()) or x
    Predictor(model, tile=0)(torch.full((3, 8, 8), 0.485))
    assert abs(seen[0] - (0 + (0.485 - 0.456) / 0.224 + (0.485 - 0.406) / 0.225) / 3) < 1e-5


def test_input_levels_round_the_predictors_input_and_survive_the_metadata(image):
    """A model trained on 8-bit images sees a float array exactly as the same image saved as a PNG."""
    eight_bit = torch.round(image * 255) / 255
    assert not torch.equal(image, eight_bit)
    rounding = Identity(meta=ModelMeta(pad_multiple=8, input_levels=255))
    assert torch.equal(Predictor(rounding, tile=0)(image), eight_bit)
    assert torch.equal(Predictor(Identity(multiple=8), tile=0)(image), image)  # no levels: taken as given
    meta = ModelMeta(pad_multiple=16, input_levels=255)
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    assert "input_levels" not in ModelMeta(pad_multiple=16).to_dict()  # earlier files' metadata unchanged


def test_batch_bf16_and_progress(image):
    calls = []
    model = LocalNet()
    batch = torch.stack([image, image.flip(-1)])[..., :96, :120]
    out32 = Predictor(model, tile=0)(batch)
    out16 = Predictor(model, tile=48, overlap=16, precision="bf16", progress=lambda d, t: calls.append((d, t)))(batch)
    assert out16.shape == batch.shape and out16.dtype == torch.float32
    assert psnr(out16, out32, protocol="skimage") > 30
    assert calls[-1][0] == calls[-1][1] == len(calls) > 1


def test_bad_options():
    with pytest.raises(ConfigError, match="precision"):
        Predictor(Identity(), precision="int8")
    with pytest.raises(ConfigError, match="half the tile"):
        Predictor(Identity(), tile=32, overlap=20)
    with pytest.raises(ConfigError, match="blend"):
        Predictor(Identity(), blend="max")
    with pytest.raises(InferenceError):
        Predictor(Identity())(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_training_mode_restored_and_eval_used():
    model = nn.Sequential(nn.Dropout(0.9))
    model.meta = ModelMeta()
    model.train()
    x = torch.rand(3, 8, 8)
    assert torch.equal(Predictor(model, tile=0)(x), x)  # dropout off inside the predictor
    assert model.training


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Predictor(Identity(), device="cuda")
    with pytest.raises(ConfigError, match="invalid device"):
        Predictor(Identity(), device="gpu7")


def test_oom_in_forced_whole_mode_is_a_clear_error(image):
    with pytest.raises(InferenceError, match="whole-image mode"):
        Predictor(OOMOnce(LocalNet(), limit=200), tile=0)(image)
