"""Clean-image sources: folders, shipped photographs, dead leaves."""
import numpy as np
import pytest
import torch

from anyrestore.data import sources
from anyrestore.errors import ConfigError


def _write(path, value=128, size=(6, 5)):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def test_folder_source_recursive_sorted_by_extension(tmp_path):
    for rel in ("b.png", "a.JPG", "sub/c.png", "sub/deeper/d.bmp", "skip.txt", "x.gif"):
        if rel.endswith((".txt", ".gif")):
            (tmp_path / rel).write_text("not an image")
        else:
            _write(tmp_path / rel)
    src = sources.FolderSource(root=tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in src.paths] == ["a.JPG", "b.png", "sub/c.png",
                                                                       "sub/deeper/d.bmp"]
    flat = sources.list_images(tmp_path, recursive=False, extensions=["png", "jpg"], exclude=["b.png"])
    assert [p.name for p in flat] == ["a.JPG"]  # b.png excluded, the rest live in sub-folders
    img = src[1]
    assert img.shape == (3, 6, 5) and img.dtype == torch.float32 and abs(float(img.mean()) - 128 / 255) < 1e-6
    assert torch.equal(src.image(5, None), src[1])
    only = sources.FolderSource(root=tmp_path, extensions=[".png"], exclude=["sub/c.png"])
    assert [p.name for p in only.paths] == ["b.png"]


def test_folder_source_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        sources.FolderSource(root=tmp_path / "missing")
    with pytest.raises(ConfigError, match="no images"):
        sources.FolderSource(root=tmp_path)


def test_shipped_photos_exclude_held_out_sample():
    pytest.importorskip("skimage")
    paths = sources.shipped_photo_paths()
    names = [p.name for p in paths]
    assert "chelsea.png" not in names and "astronaut.png" in names
    assert not {"text.png", "page.png", "logo.png", "clock_motion.png", "phantom.png"} & set(names)
    assert all(p.is_file() for p in paths)
    assert "chelsea.png" in [p.name for p in sources.shipped_photo_paths(exclude=())]
    fewer = sources.ShippedPhotos(exclude=["chelsea.png", "astronaut.png"])
    assert len(fewer) == len(paths) - 1
    img = fewer[0]
    assert img.dtype == torch.float32 and img.shape[0] == 3 and 0 <= float(img.min()) and float(img.max()) <= 1
    grey = sources.ShippedPhotos(packages=["skimage"])
    cam = grey[[p.name for p in grey.paths].index("camera.png")]
    assert torch.equal(cam[0], cam[1])  # grey photo replicated to 3 channels


def _spectrum_slope(img: torch.Tensor) -> float:
    a = img.mean(0).double().numpy()
    n = a.shape[0]
    power = np.abs(np.fft.fftshift(np.fft.fft2(a - a.mean()))) ** 2
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).astype(int)
    prof = np.bincount(r.ravel(), power.ravel()) / np.bincount(r.ravel())
    f = np.arange(len(prof)) / n
    sel = (f >= 2 / n) & (f <= 0.25)
    return float(np.polyfit(np.log(f[sel]), np.log(prof[sel]), 1)[0])


def test_dead_leaves_power_law_spectrum_and_seeds():
    src = sources.DeadLeaves(size=192)
    imgs = [src.generate(s) for s in range(3)]
    for img in imgs:
        assert img.shape == (3, 192, 192) and img.dtype == torch.float32
        assert 0 <= float(img.min()) and float(img.max()) <= 1 and float(img.std()) > 0.1
        # radially averaged power spectrum (amplitude²) between 2/N and 0.25 cycles/px: slope in [-3.0, -1.5]
        assert -3.0 <= _spectrum_slope(img) <= -1.5
    assert not torch.equal(imgs[0], imgs[1]) and not torch.equal(imgs[1], imgs[2])
    assert torch.equal(src.generate(1), imgs[1])
    g = torch.Generator().manual_seed(5)
    assert src.sample(g).shape == (3, 192, 192)


def test_dead_leaves_any_size_and_errors():
    img = sources.dead_leaves(40, 70, torch.Generator().manual_seed(0))
    assert img.shape == (3, 40, 70)
    with pytest.raises(ValueError):
        sources.dead_leaves(0, 10)
    with pytest.raises(ConfigError):
        sources.DeadLeaves(size=(1, 2, 3))


def test_build_source(tmp_path):
    _write(tmp_path / "imgs" / "a.png")
    src = sources.build_source({"type": "folder", "path": "imgs"}, root=tmp_path)
    assert len(src) == 1
    src = sources.build_source({"type": "folder", "path": "imgs", "root": str(tmp_path)})
    assert len(src) == 1
    assert isinstance(sources.build_source({"type": "dead_leaves", "size": 32}), sources.DeadLeaves)
    with pytest.raises(ConfigError, match="unknown source type"):
        sources.build_source({"type": "webcam"})
    with pytest.raises(ConfigError):
        sources.build_source({"type": "dead_leaves", "colour": 3})


def test_shipped_photos_skip_absent_packages(monkeypatch):
    pytest.importorskip("sklearn")
    assert "china.jpg" in [p.name for p in sources.shipped_photo_paths()]
    real = sources.importlib.util.find_spec
    monkeypatch.setattr(sources.importlib.util, "find_spec",
                        lambda name, *args: None if name == "sklearn" else real(name, *args))
    names = [p.name for p in sources.shipped_photo_paths()]
    assert "china.jpg" not in names and "flower.jpg" not in names
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name, *args: None)
    assert sources.shipped_photo_paths() == []
    with pytest.raises(ConfigError, match="no shipped photographs found"):
        sources.ShippedPhotos()
