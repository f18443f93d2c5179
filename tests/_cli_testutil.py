"""Shared helper of the CLI tests."""
import anyrestore.cli as cli


def run_cli(capsys, *argv):
    """Run ``anyrestore ARGV...`` in-process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
