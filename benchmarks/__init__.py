"""Benchmark scripts (speed, memory, quality) that print tables; run them from the repository root, e.g.
``python -m benchmarks.run`` or ``python benchmarks/backbones.py``. Not part of the installed package."""
