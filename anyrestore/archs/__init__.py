"""The backbone zoo. Each module below registers its architectures, presets and checkpoint families."""
from anyrestore.archs import registry  # noqa: F401
from anyrestore.archs.registry import ModelMeta, build_arch, build_model, list_presets, model_meta

# Architecture modules, imported by name (add new backbones here):
from anyrestore.archs import classical  # noqa: F401,E402
from anyrestore.archs import nafnet  # noqa: F401,E402
from anyrestore.archs import restormer  # noqa: F401,E402
from anyrestore.archs import promptir  # noqa: F401,E402
from anyrestore.archs import swinir  # noqa: F401,E402
from anyrestore.archs import retinexformer  # noqa: F401,E402

__all__ = ["ModelMeta", "build_arch", "build_model", "list_presets", "model_meta"]
