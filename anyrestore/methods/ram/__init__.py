"""RAM (Restore Anything with Masks, ECCV 2024): mask pre-training, MAC layer ranking, selective fine-tuning.

Importing this package registers the training objectives ``ram_pretrain`` and ``ram_finetune``.
"""
from anyrestore.methods.ram.finetune import RamFinetuneObjective, apply_ranking, enumerate_layers, read_ranking
from anyrestore.methods.ram.pretrain import RamPretrainObjective

__all__ = ["RamFinetuneObjective", "RamPretrainObjective", "apply_ranking", "enumerate_layers", "read_ranking"]
