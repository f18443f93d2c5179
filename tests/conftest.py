import sys
import types

import pytest
import torch

# Two cores on CI: keep intra-op threads at the machine's size and make tests deterministic.
torch.set_num_threads(min(2, torch.get_num_threads()))


def _stub_torchvision() -> None:
    """spandrel imports torchvision at import time for two architectures we never use; stub it when absent."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stub: not available in the anyrestore test environment")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = type("InterpolationMode", (), {"BILINEAR": 2, "NEAREST": 0, "BICUBIC": 3})
    functional.rotate = unavailable
    functional.normalize = unavailable
    transforms.functional = functional
    tv.transforms = transforms
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


_stub_torchvision()


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
