"""anyrestore: blind all-in-one image restoration.

Public API (imported lazily so `import anyrestore` stays cheap):
    build_model(name, **overrides)   a backbone preset from the zoo
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "build_model": ("anyrestore.archs.registry", "build_model"),
    "list_presets": ("anyrestore.archs.registry", "list_presets"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'anyrestore' has no attribute {name!r}")


__all__ = sorted(_LAZY)
