"""Shared helpers of the tests."""
import anyrestore.cli as cli


def run_cli(capsys, *argv):
    """Run ``anyrestore ARGV...`` in-process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def load_script(relative_path: str):
    """Import a repository script (``scripts/x.py``, ``benchmarks/y.py``) as a module, to call its ``main``."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_stage_model(folder, *, identity_unet: bool = False, **stages):
    """A saved nafnet-tiny with the given whole-image ``stages`` (sharpen=True, ...) and a photo folder holding the
    shipped chelsea.png: the inputs of the default-model benchmarks' tests. Returns (weights path, photo folder)."""
    import shutil
    from pathlib import Path

    import torch

    from anyrestore.archs import build_model
    from anyrestore.checkpoints import save_model

    photos = Path(folder) / "photos"
    photos.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "anyrestore" / "samples" / "chelsea.png", photos / "chelsea.png")
    torch.manual_seed(0)
    model = build_model("nafnet-tiny", **stages)
    if identity_unet:  # a zero ending: the residual U-Net returns its input
        with torch.no_grad():
            model.ending.weight.zero_()
            model.ending.bias.zero_()
    return save_model(model, Path(folder) / "tiny.safetensors"), photos


def randomize_parameters(module, *, seed: int, scale: float):
    """Overwrite every parameter of ``module`` with seeded Gaussian values of std ``scale``; returns ``module``
    (an untrained stage is often the identity, which hides what a test wants to see)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return module


def switch_on_weightless_stage(folder, stage: str, *options: str):
    """Run ``scripts/train_global_stage.py STAGE`` (a stage without weights) on a saved nafnet-tiny with an exposure
    head and check that it switches the stage on while every tensor stays byte for byte. Returns (the script
    module, the input weights path, the output path, the output's metadata)."""
    import json
    from pathlib import Path

    import torch
    from safetensors import safe_open

    from anyrestore.archs import build_model
    from anyrestore.checkpoints import load_model, save_model

    torch.manual_seed(0)
    weights = save_model(build_model("nafnet-tiny", tone_curve=True), Path(folder) / "unet.safetensors")
    out = Path(folder) / f"{stage}.safetensors"
    script = load_script("scripts/train_global_stage.py")
    assert script.main([stage, "--weights", str(weights), "-o", str(out), *options]) == 0
    before, after = load_model(weights), load_model(out)
    assert getattr(after, stage) is not None and getattr(before, stage) is None
    assert before.state_dict().keys() == after.state_dict().keys()
    for key, value in before.state_dict().items():
        assert torch.equal(after.state_dict()[key], value), key
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["previous_sha256"] == before.checkpoint_info["sha256"]
    assert json.loads(meta["arch_kwargs"])[stage] is True
    return script, weights, out, meta
