"""Shared helper of the CLI tests."""
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
