"""The backbone zoo. Each module below registers its architectures, presets and checkpoint families."""
from anyrestore.archs import registry  # noqa: F401
from anyrestore.archs.registry import ModelMeta, build_arch, build_model, list_presets, model_meta

# Architecture modules, imported by name (add new backbones here):

__all__ = ["ModelMeta", "build_arch", "build_model", "list_presets", "model_meta"]
