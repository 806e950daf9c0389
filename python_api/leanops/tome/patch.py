"""``leanops.tome.patch``: ToMe for Hugging Face ViT, CLIP vision and BERT encoders, in place."""
from __future__ import annotations

import torch
from torch import nn

from .._requirements import check_transformers
from .layers import LAYER_FORWARDS
from .schedule import r_schedule
from .state import ToMeState

SUPPORTED = ("ViTModel", "ViTForImageClassification", "CLIPVisionModel", "BertModel")


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__ in LAYER_FORWARDS or hasattr(m, "_tome_original_class")]


def _tome_class(cls: type) -> type:
    forward = LAYER_FORWARDS[cls.__name__]
    return type(f"ToMe{cls.__name__}", (cls,), {"forward": forward, "_tome_original_class": cls})


def patch(model: nn.Module, r=0, prop_attn: bool = True, trace_source: bool = False, num_protected: int = 1,
          _ideal: bool = False) -> nn.Module:
    """Apply token merging to ``model`` in place and return it.

    r: int, ``(r, inflect)`` ramp, or a per-layer list (see ``schedule.r_schedule``).
    A layer whose r is 0 (or clamped to 0) changes nothing: tokens stay in their order.
    prop_attn: proportional attention (``log(size)`` added to the attention logits inside SDPA); SDPA gets
    no mask at all until a layer has merged (all sizes are 1) unless there is padding.
    trace_source: keep the token -> slot index map (``slot_map(model)``) for visualisation/unmerging.
    num_protected: leading tokens never merged (1: the class token).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if type(model).__name__ not in SUPPORTED and not any(type(model).__name__.startswith(s) for s in SUPPORTED):
        raise TypeError(f"model must be one of {SUPPORTED} (Hugging Face transformers), got {type(model).__name__}")
    if isinstance(num_protected, bool) or not isinstance(num_protected, int) or num_protected < 0:
        raise ValueError(f"num_protected must be an int >= 0, got {num_protected!r}")
    check_transformers()  # the layer adapters read attribute names of recent transformers
    if hasattr(model, "_tome_state"):
        unpatch(model)
    layers = _encoder_layers(model)
    if not layers:
        raise TypeError(f"no supported encoder layers ({', '.join(LAYER_FORWARDS)}) found in {type(model).__name__}")
    state = ToMeState(r=r_schedule(r, len(layers)), prop_attn=bool(prop_attn), trace_source=bool(trace_source),
                      num_protected=num_protected, ideal=_ideal)
    for layer in layers:
        layer.__class__ = _tome_class(type(layer))
        layer._tome_state = state
    model._tome_state = state
    model._tome_hook = model.register_forward_pre_hook(lambda module, args: state.reset())
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo ``patch``: original layer classes, no hook, no state."""
    if not hasattr(model, "_tome_state"):
        return model
    for layer in _encoder_layers(model):
        if hasattr(type(layer), "_tome_original_class"):
            layer.__class__ = type(layer)._tome_original_class
        layer.__dict__.pop("_tome_state", None)
    model._tome_hook.remove()
    del model._tome_hook, model._tome_state
    return model


def _state(model: nn.Module) -> ToMeState:
    if not hasattr(model, "_tome_state"):
        raise ValueError("model is not patched with leanops.tome.patch")
    return model._tome_state


def token_sizes(model: nn.Module) -> torch.Tensor | None:
    """``[B, N_out]`` sizes of the output tokens of the last forward (0 marks padding)."""
    return _state(model).size


def slot_map(model: nn.Module) -> torch.Tensor | None:
    """``[B, N_in]`` output slot of every input token of the last forward (``trace_source=True``)."""
    return _state(model).slot_map


def tokens_per_layer(model: nn.Module) -> list[int]:
    return list(_state(model).tokens_per_layer)


def mean_pool(hidden: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Size-weighted mean of merged tokens: the mean over the original (non-padding) tokens."""
    size = token_sizes(model)
    if size is None:
        raise ValueError("run a forward pass of the patched model first")
    w = size.to(hidden.dtype).unsqueeze(-1)
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
