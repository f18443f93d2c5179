import pytest
import torch

from anyrestore.testing import stub_torchvision

# Two cores on CI: keep intra-op threads at the machine's size and make tests deterministic.
torch.set_num_threads(min(2, torch.get_num_threads()))


stub_torchvision()


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
