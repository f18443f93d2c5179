"""anyrestore: blind all-in-one image restoration.

Public API (imported lazily so `import anyrestore` stays cheap):
    build_model(name, **overrides)   a backbone preset from the zoo
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "build_model": ("anyrestore.archs.registry", "build_model"),
    "list_presets": ("anyrestore.archs.registry", "list_presets"),
    "load_model": ("anyrestore.api", "load_model"),
    "save_model": ("anyrestore.checkpoints", "save_model"),
    "restore": ("anyrestore.api", "restore"),
    "Predictor": ("anyrestore.inference.predictor", "Predictor"),
    "read_image": ("anyrestore.io", "read_image"),
    "write_image": ("anyrestore.io", "write_image"),
    "psnr": ("anyrestore.metrics.fullref", "psnr"),
    "ssim": ("anyrestore.metrics.fullref", "ssim"),
    "degrade": ("anyrestore.degradations.pipeline", "degrade"),
    "build_sampler": ("anyrestore.degradations.pipeline", "build_sampler"),
    "optimize_model": ("anyrestore.archs.fastpaths", "optimize_model"),
    "set_fast_paths": ("anyrestore.archs.fastpaths", "set_fast_paths"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'anyrestore' has no attribute {name!r}")


__all__ = sorted(_LAZY)
