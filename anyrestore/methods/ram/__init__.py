"""RAM (Restore Anything with Masks, ECCV 2024): mask pre-training, MAC layer ranking, selective fine-tuning.

Stages (recipes in ``configs/ram/``):

1. ``objective: {type: ram_pretrain}`` (:mod:`.pretrain`, :mod:`.masking`): 50 % pixel masks with an exact count,
   zero token in normalised space, L1 on hidden pixels only; works with any backbone of the zoo.
2. ``anyrestore mac`` (:mod:`.mac`, :mod:`.mac_data`): Mask Attribute Conductance ranking of every layer (plus the
   IG and random baselines), written in the official three-file format + ``ranking.json`` + a bar chart.
3. ``objective: {type: ram_finetune, ranking: DIR, ratio: 0.1}`` (:mod:`.finetune`): only the first
   ``int(N_layers · ratio)`` ranked layers train; everything else is frozen and kept out of the optimiser.
4. Inference as usual; :class:`~.twin_mask.TwinMaskModel` gives twin-mask inference for pre-trained-only models.

Importing this package registers the training objectives ``ram_pretrain`` and ``ram_finetune``.
"""
from anyrestore.methods.ram.finetune import RamFinetuneObjective, apply_ranking, enumerate_layers, read_ranking
from anyrestore.methods.ram.pretrain import RamPretrainObjective

__all__ = ["RamFinetuneObjective", "RamPretrainObjective", "apply_ranking", "enumerate_layers", "read_ranking"]
