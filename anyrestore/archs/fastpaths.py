"""Exact fast paths of the backbone zoo and the switches that turn them on and off.

Four in-layer fast paths exist; each layer that has one carries a boolean attribute of the same name and keeps the
official formula (the "plain" path) right next to the fast one:

* ``fused_layernorm`` — channel LayerNorm of (B,C,H,W) maps (:class:`~anyrestore.archs.blocks.LayerNorm2d`,
  :class:`~anyrestore.archs.blocks.ChannelLayerNorm`) through one ``F.layer_norm`` call on the channels-last view
  (BiasFree: one ``var`` over channels) instead of the hand-written mean/var formula on permuted copies. The output
  keeps the input's memory format.
* ``window_sdpa`` — SwinIR window attention through ``F.scaled_dot_product_attention``, with the
  relative-position bias and the shift mask summed into one 4-D ``attn_mask`` (gathered once per block call, not per
  window) and the scale passed as ``scale``.
* ``sdpa`` — the transposed channel attention of Restormer/PromptIR (MDTA) and RetinexFormer (IG-MSA) applies the
  q/k L2 norms and the temperature to the small d×d map instead of the d×HW maps
  (:func:`~anyrestore.archs.blocks.transposed_attention`); SDPA is the same function there but its head size would
  be H·W, which only the unfused math kernel takes, and it measured slower on CPU.
* ``folded_scales`` — NAFNet blocks (:class:`~anyrestore.archs.nafnet.NAFBlock`) fold β, γ and the SCA channel
  scale into the 1×1 convolution weights that precede them, saving three passes over each block's feature map;
  at inference on the CPU a large single image (more than twice ``nafnet.BAND_PIXELS``) runs each block in
  bands of rows, so its double-width maps never exist whole (faster, less memory).

All are mathematically the same function as the plain path (only the rounding differs: the tests in
``tests/test_archs_fastpaths.py`` hold every backbone family to max |Δ| ≤ 1e-4 in fp32, forward in eval and
parameter gradients in train mode), so they are ON by default for every newly built model and are used in training
too. ``set_fast_paths(model, False)`` restores the plain path (the official formulas), e.g. for bit-for-bit
comparisons with an upstream implementation. Inference (the Predictor) calls :func:`set_device_fast_paths`, which
keeps on CUDA only the paths measured faster there.

Two whole-model options are opt-in through :func:`optimize_model`: channels-last memory format (on CPU the larger
win for the convolution-heavy Restormer/PromptIR/RetinexFormer: the fused LayerNorm then copies nothing and MDTA
attends on token-major views of the channels-last maps) and ``torch.compile``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyrestore.errors import ConfigError

FAST_PATHS = ("fused_layernorm", "sdpa", "window_sdpa", "folded_scales")
#: state of the in-layer switches of a freshly constructed layer
FAST_BY_DEFAULT = True

_MODEL_ATTRS = ("meta", "arch_name", "arch_kwargs", "preset_name", "pad_multiple", "prefer_whole_image",
                "whole_image_pixels")


def set_fast_paths(model: nn.Module, enabled: bool = True, *, fused_layernorm: bool | None = None,
                   sdpa: bool | None = None, window_sdpa: bool | None = None,
                   folded_scales: bool | None = None) -> nn.Module:
    """Switch the in-layer fast paths of every submodule of ``model`` (in place).

    Args:
        model: any module; submodules without a fast path are left alone.
        enabled: value for every switch not given explicitly.
        fused_layernorm, sdpa, window_sdpa, folded_scales: per-path override (``None`` -> ``enabled``).

    Returns:
        ``model`` itself.
    """
    given = {"fused_layernorm": fused_layernorm, "sdpa": sdpa, "window_sdpa": window_sdpa,
             "folded_scales": folded_scales}
    values = {name: enabled if value is None else bool(value) for name, value in given.items()}
    for module in model.modules():
        for name, value in values.items():
            if isinstance(getattr(module, name, None), bool):
                setattr(module, name, bool(value))
    return model


def set_device_fast_paths(model: nn.Module, device: torch.device | str, precision: str = "fp32") -> nn.Module:
    """Set the fast-path switches of ``model`` to the ones measured fastest on ``device``'s type (in place).

    Every choice gives the same function (all paths are exact), so only speed differs. CPU and other devices: every
    path on. CUDA, from ``benchmarks/fastpath_ablation.py`` on an H100 at 512²
    (``benchmarks/results/fastpath-ablation-cuda-h100-2026-11-22.md``):

    * ``fused_layernorm`` only under bf16: the one ``F.layer_norm`` call on the channels-last view costs 10 % in fp32
      and up to 17 % in fp16 on Restormer/PromptIR, and gains 10-12 % in bf16;
    * ``sdpa`` on for the transposed attention of Restormer/PromptIR/RetinexFormer (+3 % in fp32);
    * ``window_sdpa`` off: the gathered bias+mask ``attn_mask`` made SwinIR's window attention 9 % slower in fp32
      and 21 % in fp16;
    * ``folded_scales`` on (NAFNet; not measured alone on a GPU, and it only removes work).

    Returns:
        ``model`` itself.
    """
    if torch.device(device).type != "cuda":
        return set_fast_paths(model, True)
    return set_fast_paths(model, True, fused_layernorm=precision == "bf16", window_sdpa=False)


def fast_path_state(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{path: (layers switched on, layers that have the switch)}`` over all submodules of ``model``."""
    state = {}
    for name in FAST_PATHS:
        flags = [getattr(m, name) for m in model.modules() if isinstance(getattr(m, name, None), bool)]
        state[name] = (sum(flags), len(flags))
    return state


class ChannelsLast(nn.Module):
    """Calls ``model`` (already converted to channels-last) with its 4-D tensor arguments converted too.

    The output is the model's, in whatever memory format its last layer produced; values are independent of the
    memory format. Model attributes the Predictor reads (``meta``, ``arch_name``, ``arch_kwargs``, ...) are copied
    onto the wrapper. ``state_dict`` keys carry the ``model.`` prefix: save the wrapped ``.model`` instead.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        copy_model_attrs(model, self)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_to_channels_last(a) for a in args)
        kwargs = {k: _to_channels_last(v) for k, v in kwargs.items()}
        return self.model(*args, **kwargs)


def to_channels_last_(model: nn.Module) -> nn.Module:
    """Store every 4-D parameter and buffer of ``model`` in channels-last memory, in place (values unchanged).

    Unlike ``model.to(memory_format=...)`` this skips tensors of other ranks (PromptIR's 5-D prompt banks).
    """
    with torch.no_grad():
        for module in model.modules():
            for tensors in (module._parameters, module._buffers):
                for name, t in tensors.items():
                    if t is not None and t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last):
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model


def _to_channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def copy_model_attrs(src: nn.Module, dst: nn.Module) -> None:
    """Copy the model attributes the Predictor reads (``meta``, ``arch_name``...) onto a wrapper module."""
    for name in _MODEL_ATTRS:
        if hasattr(src, name) and name not in dst.__dict__:
            object.__setattr__(dst, name, getattr(src, name))


def check_compile_usable(device: torch.device | str = "cpu") -> None:
    """Raise :class:`~anyrestore.errors.ConfigError` when ``torch.compile`` cannot run on ``device`` here.

    Compiles and runs a two-op function once (a few seconds the first time in a process), so a missing C++
    compiler, Triton or an unsupported Python surfaces now with one line instead of at the first real forward.
    """
    try:
        fn = torch.compile(lambda t: torch.relu(t) * 2.0 + 1.0, dynamic=False)
        out = fn(torch.ones(4, device=device))
        ok = bool(torch.equal(out.cpu(), torch.full((4,), 3.0)))
    except Exception as exc:  # any backend failure means "unusable"; the message names it
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"torch.compile is unusable on {device}: {type(exc).__name__}: {reason[:200]}; run "
                          "without --compile") from None
    if not ok:
        raise ConfigError(f"torch.compile gives wrong results on {device}; run without --compile")


def optimize_model(model: nn.Module, *, fast: bool | None = True, channels_last: bool = False,
                   compile: bool = False) -> nn.Module:
    """Apply the speed options to ``model`` and return the module to call.

    Args:
        model: a zoo backbone (any ``nn.Module`` works); modified in place (switches, memory format).
        fast: in-layer fast paths on (True) or the plain official formulas (False); see :func:`set_fast_paths`.
            ``None`` leaves the switches as they are (e.g. one path on, set by the caller).
        channels_last: convert the weights to ``torch.channels_last`` and wrap the model in :class:`ChannelsLast`,
            which converts 4-D inputs, so callers pass ordinary NCHW tensors.
        compile: wrap with ``torch.compile`` (opt-in; the first call of each input shape compiles, which takes
            seconds to minutes). Checked up front with :func:`check_compile_usable`.

    Returns:
        The module to call: ``model`` itself, a :class:`ChannelsLast` wrapper and/or a compiled module. ``meta``,
        ``arch_name`` and ``arch_kwargs`` stay reachable as attributes of whatever is returned.

    Raises:
        ConfigError: ``compile=True`` and ``torch.compile`` does not work on the model's device.
    """
    if fast is not None:
        set_fast_paths(model, fast)
    out: nn.Module = model
    if channels_last:
        to_channels_last_(model)
        out = ChannelsLast(model)
    if compile:
        param = next(model.parameters(), None)
        check_compile_usable(param.device if param is not None else "cpu")
        compiled = torch.compile(out)
        copy_model_attrs(model, compiled)
        out = compiled
    return out
