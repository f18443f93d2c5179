"""Data: clean-image sources (`sources`), datasets, benchmark layouts and multi-task sampling.

Kept import-light on purpose: import the submodule you need (``from anyrestore.data import sources``).
"""
