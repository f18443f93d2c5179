"""Golden outputs (backbones.md §10.9): a seeded random tiny model per registry name, a 32x32 seeded input, and the
stored checksum (sum, abs-sum, 8 sample values). Guards against silent numerical changes.

Regenerate (only after an intended change, and say why in the commit): python tests/test_archs_zoo_golden.py
"""
import json
from pathlib import Path

import pytest
import torch

from _zoo_testutil import image, randomize_

GOLDEN = Path(__file__).parent / "data" / "golden" / "zoo_part1.json"
TINY_PROMPT = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                   prompt_dims=(8, 8, 16), prompt_sizes=(8, 4, 2))
CASES = {
    "nafnet": dict(width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1)),
    "nafnet_local": dict(width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1), train_size=16),
    "restormer": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
    "lora_restormer": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), lora_rank=2),
    "promptir": TINY_PROMPT,
    "ram_promptir": TINY_PROMPT,
    "maskdcpt_promptir": TINY_PROMPT,
}
SAMPLES = [(0, 0, 0), (0, 5, 7), (1, 13, 2), (2, 31, 31), (1, 16, 16), (2, 0, 30), (0, 22, 9), (1, 8, 27)]


def checksum(arch: str) -> dict:
    from anyrestore.archs import build_model

    model = randomize_(build_model(arch, **CASES[arch]), seed=7).eval()
    with torch.no_grad():
        out = model(image(32, 32, seed=11))[0]
    return {"sum": out.sum().item(), "abs_sum": out.abs().sum().item(),
            "samples": [out[c, y, x].item() for c, y, x in SAMPLES]}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_golden_output(arch):
    stored = json.loads(GOLDEN.read_text())[arch]
    got = checksum(arch)
    assert got["sum"] == pytest.approx(stored["sum"], rel=1e-5, abs=1e-4)
    assert got["abs_sum"] == pytest.approx(stored["abs_sum"], rel=1e-5, abs=1e-4)
    assert got["samples"] == pytest.approx(stored["samples"], abs=1e-5)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    GOLDEN.write_text(json.dumps({arch: checksum(arch) for arch in sorted(CASES)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
