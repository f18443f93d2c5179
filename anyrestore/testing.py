"""Helpers shared by the test suite and the benchmarks (never imported by the library itself)."""
from __future__ import annotations

import sys
import types


def stub_torchvision() -> None:
    """Let ``import spandrel`` work without torchvision.

    spandrel (our test-only parity reference) imports torchvision at import time for two architectures we never
    build (backbones.md §9.1); torchvision cannot be installed next to the CPU torch build. When torchvision is
    absent, a stub exposing the three names spandrel touches is inserted; calling any of them raises.
    """
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stub: not available in the anyrestore test environment")

    tv, transforms, functional = (types.ModuleType(name) for name in (
        "torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    functional.InterpolationMode = type("InterpolationMode", (), {"BILINEAR": 2, "NEAREST": 0, "BICUBIC": 3})
    functional.rotate = functional.normalize = unavailable
    transforms.functional, tv.transforms = functional, transforms
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})
