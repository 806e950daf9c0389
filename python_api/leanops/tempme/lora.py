"""Parameter-efficient adaptation through ``peft``: LoRA on the attention projections of both CLIP towers,
plus TempMe's temporal position embeddings and the logit scale; everything else frozen."""
from __future__ import annotations

from torch import nn

from .patch import TEMPORAL_POS

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
EXTRA_TRAINABLE = (TEMPORAL_POS, "logit_scale")


def add_lora(model: nn.Module, rank: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules=ATTENTION_PROJECTIONS) -> nn.Module:
    """Wrap ``model`` (a CLIPModel, TempMe-patched or not) in a peft ``PeftModel`` with LoRA adapters on
    ``target_modules`` of both towers; the temporal embeddings and the logit scale stay trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - peft is an extra
        raise ImportError("LoRA needs peft (pip install peft)") from e
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        bias="none")
    peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if any(key in name for key in EXTRA_TRAINABLE):
            param.requires_grad_(True)
    return peft_model


def trainable_parameters(model: nn.Module) -> dict:
    """Counts of trainable and all parameters."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
