"""Training and evaluation engine: typed recipes, datasets glue, trainer, DDP, EMA, schedules, checkpoints.

Import the submodules directly (``anyrestore.engine.trainer``...); this package stays import-light.
"""
