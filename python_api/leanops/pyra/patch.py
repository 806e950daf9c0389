"""``leanops.pyra.patch``: ToMe merging with a PYRA gate in every merging layer, LoRA adapters (peft) on the
attention projections, everything else frozen; ``param_groups`` (gates with their own learning rate) and
``export`` (LoRA merged into the weights by peft, gates kept)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import tome
from ..tome.patch import _encoder_layers
from .gate import PYRAGate
from .merge import PYRAMergeStep
from .schedule import resolve, tokens_per_layer

# The attention projections LoRA adapts, per supported model family (transformers 5 attribute names).
_LORA_TARGETS = {
    "Bert": r".*\.attention\.(self\.(query|key|value)|output\.dense)",
    "ViT": r".*\.attention\.(q_proj|k_proj|v_proj|o_proj)",
    "CLIP": r".*\.self_attn\.(q_proj|k_proj|v_proj|out_proj)",
}


@dataclass
class PYRAState:
    schedule: list[int]
    num_tokens: int | None
    num_protected: int
    gates: bool
    exported: bool = False


def _family(model: nn.Module) -> str:
    name = type(model).__name__
    for fam in _LORA_TARGETS:
        if name.startswith(fam):
            return fam
    raise TypeError(f"model must be a Hugging Face ViT, CLIPVisionModel or BertModel, got {name}")


def _image_tokens(model: nn.Module) -> int:
    cfg = model.config
    cfg = getattr(cfg, "vision_config", cfg)
    return (cfg.image_size // cfg.patch_size) ** 2 + 1


def _check_positive(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError(f"{name} must be a number > 0, got {v!r}")


def patch(model: nn.Module, r=0, lora_rank: int = 8, lora_alpha: float | None = None, train_gates: bool = True,
          *, num_tokens: int | None = None, gates: bool = True, lora_dropout: float = 0.0, head="auto",
          prop_attn: bool = True, num_protected: int = 1) -> nn.Module:
    """PYRA in place: ToMe merging (``leanops.tome.patch``) with a ``PYRAGate`` in each layer that merges, LoRA
    (peft) on the attention projections, all other weights frozen except the task head. Returns ``model``.

    r: int, per-layer list, ``(r, inflect)``, or ``"low"``/``"high"`` (PYRA's ViT-B/16 schedules, rescaled to
    the model's depth and tokens, see ``schedule.py``). num_tokens: input tokens (ViT/CLIP: from the config;
    BERT: the padded input length; needed for named schedules, and then every input must have that many).
    lora_alpha: LoRA scale numerator (default ``2 * lora_rank``). gates=False: ToMe + LoRA (the baseline).
    train_gates=False: gates kept at their ToMe-equal init. head: names of modules left trainable
    ("auto": ``classifier`` where the model has one).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    family = _family(model)
    if hasattr(model, "_pyra_state") or hasattr(model, "_tome_state"):
        raise ValueError("model is already patched (leanops.pyra.patch or leanops.tome.patch); patch a fresh model")
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 1:
        raise ValueError(f"lora_rank must be an int >= 1, got {lora_rank!r}")
    lora_alpha = 2 * lora_rank if lora_alpha is None else lora_alpha
    _check_positive(lora_alpha, "lora_alpha")
    if family in ("ViT", "CLIP"):
        tokens = _image_tokens(model)
        if num_tokens is not None and num_tokens != tokens:
            raise ValueError(f"num_tokens={num_tokens} but the model's images give {tokens} tokens")
        num_tokens = tokens
    elif num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1):
        raise ValueError(f"num_tokens must be an int >= 1, got {num_tokens!r}")
    layers = _encoder_layers(model)
    schedule = resolve(r, len(layers), num_tokens, num_protected)
    if num_tokens is not None:
        tokens_per_layer(schedule, num_tokens, num_protected)  # raises if some r is larger than the tokens left

    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                       target_modules=_LORA_TARGETS[family], bias="none"), model)
    tome.patch(model, r=schedule, prop_attn=prop_attn, num_protected=num_protected)
    dim = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.vision_config.hidden_size
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):  # gates draw no numbers from the global generator: a head or
        for i, (layer, r_i) in enumerate(zip(layers, schedule)):  # dropout made after starts as in ToMe + LoRA
            if gates and r_i > 0:
                layer.tome_merge = PYRAMergeStep(PYRAGate(dim, r_i), i).to(param.device, param.dtype)

    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    for m in model.modules():
        if isinstance(m, PYRAGate):
            m.requires_grad_(bool(train_gates))
    heads = (("classifier",) if hasattr(model, "classifier") else ()) if head == "auto" else tuple(head or ())
    for h in heads:
        if not hasattr(model, h):
            raise ValueError(f"head names a module the model does not have: {h!r}")
        getattr(model, h).requires_grad_(True)

    model._pyra_state = PYRAState(schedule=schedule, num_tokens=num_tokens, num_protected=num_protected, gates=gates)
    if family == "Bert":  # text lengths vary: check the schedule against each input's length
        model._pyra_hook = model.register_forward_pre_hook(_check_text_length, with_kwargs=True)
    return model


def _check_text_length(model, args, kwargs):
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is not None:
        state: PYRAState = model._pyra_state
        if state.gates and any(state.schedule):
            tokens_per_layer(state.schedule, ids.shape[1], state.num_protected)


def _state(model: nn.Module, what: str) -> PYRAState:
    if not isinstance(model, nn.Module) or not hasattr(model, "_pyra_state"):
        raise ValueError(f"model must be patched with leanops.pyra.patch before {what}")
    return model._pyra_state


def gates(model: nn.Module) -> list[PYRAGate]:
    return [m for m in model.modules() if isinstance(m, PYRAGate)]


def param_groups(model: nn.Module, lr: float, gate_lr: float) -> list[dict]:
    """Optimizer parameter groups: the trainable gate parameters at ``gate_lr``, every other trainable
    parameter (LoRA, head) at ``lr``. ``model`` may wrap a patched model (e.g. an encoder plus a head)."""
    _check_positive(lr, "lr")
    if isinstance(gate_lr, bool) or not isinstance(gate_lr, (int, float)) or gate_lr < 0:
        raise ValueError(f"gate_lr must be a number >= 0, got {gate_lr!r}")
    if not any(hasattr(m, "_pyra_state") for m in model.modules()):
        raise ValueError("model holds no model patched with leanops.pyra.patch")
    gate_ids = {id(p) for g in gates(model) for p in g.parameters()}
    gate_params = [p for p in model.parameters() if p.requires_grad and id(p) in gate_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in gate_ids]
    groups = [{"params": rest, "lr": lr, "name": "lora_and_head"}]
    if gate_params:
        groups.append({"params": gate_params, "lr": gate_lr, "name": "pyra_gates"})
    return groups


def export(model: nn.Module) -> nn.Module:
    """Merge LoRA into the base weights (peft's ``LoraLayer.merge``) and drop the adapter modules; gates and
    merging stay. The result is a plain PYRA-patched model for inference; its outputs equal the adapted model's."""
    state = _state(model, "export")
    from peft.tuners.lora import LoraLayer

    adapted = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, m in adapted:
        m.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, m.get_base_layer())
    state.exported = True
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Remove merging and the gates (LoRA stays where ``export`` has not merged it)."""
    _state(model, "unpatch")
    for layer in _encoder_layers(model):
        if "tome_merge" in layer._modules:
            del layer.tome_merge
    tome.unpatch(model)
    if hasattr(model, "_pyra_hook"):
        model._pyra_hook.remove()
        del model._pyra_hook
    del model._pyra_state
    return model
