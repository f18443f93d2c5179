import io as pyio
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from anyrestore.errors import ImageReadError
from anyrestore.io import ImageWriteError, read_image, read_image_info, write_image


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def test_8bit_png_round_trip_exact(tmp_path, rng):
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    path = write_image(tmp_path / "a.png", torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    img, info = read_image_info(path)
    assert img.dtype == torch.float32 and img.shape == (3, 13, 17)
    assert info.bit_depth == 8 and not info.gray and info.alpha is None
    np.testing.assert_array_equal(np.round(_hwc(img) * 255).astype(np.uint8), rgb)


def test_channel_order_is_rgb(tmp_path):
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    img = read_image(tmp_path / "red.png")
    assert torch.allclose(img[0], torch.full((4, 4), 200 / 255)) and img[1:].abs().max() == 0


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_round_trip_exact(tmp_path, rng, suffix):
    rgb16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"src{suffix}"), rgb16[:, :, ::-1])
    img, info = read_image_info(tmp_path / f"src{suffix}")
    assert info.bit_depth == 16
    np.testing.assert_array_equal(np.round(_hwc(img).astype(np.float64) * 65535).astype(np.uint16), rgb16)
    out = write_image(tmp_path / f"out{suffix}", img, info=info)  # same depth as the source by default
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[:, :, ::-1], rgb16)


def test_16bit_to_jpeg_falls_back_to_8bit(tmp_path, rng):
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = write_image(tmp_path / "x.jpg", img, bit_depth=16)
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_gray_expanded_kept_and_written_back(tmp_path, rng):
    gray = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img, info = read_image_info(tmp_path / "g.png")
    assert info.gray and img.shape == (3, 10, 12)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert read_image(tmp_path / "g.png", keep_gray=True).shape == (1, 10, 12)
    out = write_image(tmp_path / "g_out.png", img, info=info)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.ndim == 2
    np.testing.assert_array_equal(back, gray)


def test_rgba_alpha_kept_aside_and_reattached(tmp_path, rng):
    bgra = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    img, info = read_image_info(tmp_path / "a.png")
    assert img.shape == (3, 6, 7) and info.alpha is not None and info.alpha.shape == (1, 6, 7)
    np.testing.assert_array_equal(np.round(info.alpha[0].numpy() * 255).astype(np.uint8), bgra[:, :, 3])
    out = write_image(tmp_path / "b.png", img, info=info)
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), bgra)


def _asymmetric(h=6, w=9):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w)[None, :] * 25
    a[..., 1] = np.arange(h)[:, None] * 40
    a[0, 0] = (255, 255, 255)
    return a


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_png(tmp_path, orientation):
    pil = Image.fromarray(_asymmetric())
    exif = Image.Exif()
    exif[0x0112] = orientation
    pil.save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    img, info = read_image_info(tmp_path / "o.png")
    assert info.orientation == orientation
    np.testing.assert_array_equal(np.round(_hwc(img) * 255).astype(np.uint8), expected)


def test_exif_orientation_jpeg(tmp_path):
    base = np.kron(_asymmetric(), np.ones((8, 8, 1), np.uint8))  # blocks survive JPEG compression
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(base).save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "r.jpg")
    assert img.shape == (3, base.shape[1], base.shape[0])
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.jpg")).convert("RGB")).astype(np.float64)
    assert np.abs(_hwc(img) * 255 - expected).mean() < 1.0
    assert np.abs(_hwc(img) * 255 - np.rot90(base, k=-1)).mean() < 3.0


@pytest.fixture
def bad_files(tmp_path, rng):
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb)[1].tobytes()
    jpg = cv2.imencode(".jpg", rgb)[1].tobytes()
    files = {
        "corrupt.png": png[:16] + rng.integers(0, 256, len(png) - 16, dtype=np.uint8).tobytes(),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: int(len(jpg) * 0.7)],
        "empty.png": b"",
        "notes.png": b"this is a text file, not an image\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("name", ["corrupt.png", "truncated.png", "truncated.jpg", "empty.png", "notes.png",
                                  "missing.png"])
def test_bad_files_raise_clear_error(bad_files, name):
    with pytest.raises(ImageReadError) as err:
        read_image(bad_files / name)
    message = str(err.value)
    assert name in message and "\n" not in message


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_write_is_atomic(tmp_path, monkeypatch):
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_image(tmp_path / "x.png", img)
    assert list(tmp_path.iterdir()) == []  # no partial output, no temporary file left


def test_written_files_get_the_permissions_of_the_umask_not_the_temporary_files_0600(tmp_path):
    from anyrestore.archs import build_model
    from anyrestore.checkpoints import save_model

    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "x.png", img)
        save_model(build_model("nafnet-tiny"), tmp_path / "m.safetensors")
        os.umask(0o077)
        write_image(tmp_path / "private.png", img)
    finally:
        os.umask(old)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.png").stat().st_mode & 0o777 == 0o600


def test_write_errors(tmp_path):
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ImageWriteError, match="suffix"):
        write_image(tmp_path / "x.gif", img)
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "nope" / "x.png", img)
    with pytest.raises(ImageWriteError, match="bit depth"):
        write_image(tmp_path / "x.png", img, bit_depth=12)
    with pytest.raises(ImageWriteError, match="tensor"):
        write_image(tmp_path / "x.png", torch.rand(2, 8, 8))


def test_numpy_input_and_webp_bmp(tmp_path, rng):
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for suffix in (".bmp", ".webp"):
        path = write_image(tmp_path / f"x{suffix}", rgb)
        back = np.round(_hwc(read_image(path)) * 255).astype(np.uint8)
        if suffix == ".bmp":
            np.testing.assert_array_equal(back, rgb)
        else:
            assert np.abs(back.astype(int) - rgb).mean() < 40  # lossy default WebP, still the same picture
    with Image.open(pyio.BytesIO((tmp_path / "x.webp").read_bytes())) as im:
        assert im.size == (8, 8)
