"""``leanops.tempme.patch``: TempMe on a Hugging Face ``CLIPModel`` / ``CLIPVisionModel``, in place.

The vision tower gets a video path: ``pixel_values`` ``[B, F, 3, H, W]`` run through the TempMe layers
(``layers.py``) and give one feature per video (mean over frames of the post-layernorm class tokens, then
the projection when the model has one). 4-D ``pixel_values`` still take the original image path, so the
text tower and image-text use are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from .._requirements import check_transformers
from .config import TempMeConfig
from .layers import tempme_layer_forward
from .state import TempMeState

TEMPORAL_POS = "tempme_temporal_pos"  # attribute (and parameter-name prefix) of the temporal embeddings


def _clip_classes():
    try:
        from transformers import CLIPVisionModel
    except ImportError as e:  # pragma: no cover - transformers is the hf extra
        raise ImportError("leanops.tempme needs transformers (pip install 'leanops[hf]')") from e
    return CLIPVisionModel


def vision_tower(model: nn.Module) -> nn.Module:
    """The ``CLIPVisionModel`` inside ``model`` (a CLIP model, possibly wrapped by peft); TypeError otherwise."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a Hugging Face CLIPModel or CLIPVisionModel, got {type(model).__name__}")
    vision_cls = _clip_classes()
    for module in model.modules():
        if isinstance(module, vision_cls):
            return module
    raise TypeError(f"model must be a Hugging Face CLIPModel or CLIPVisionModel (a CLIP vision tower inside), "
                    f"got {type(model).__name__}")


def _projection(model: nn.Module):
    for module in model.modules():
        proj = getattr(module, "visual_projection", None)
        if isinstance(proj, nn.Module):
            return proj
    return None


def _state(model: nn.Module) -> TempMeState:
    vision = vision_tower(model)
    if not hasattr(vision, "_tempme_state"):
        raise ValueError("model is not patched with leanops.tempme.patch")
    return vision._tempme_state


def video_tokens(vision: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [B, M, C], class tokens after post-layernorm [B, F, C])`` of a patched vision tower."""
    state: TempMeState = vision._tempme_state
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.dim() != 5:
        raise ValueError(f"pixel_values must be 5-D [B, F, 3, H, W] (a batch of videos), got shape "
                         f"{tuple(pixel_values.shape)}; encode single images with the model's image path")
    videos, frames = pixel_values.shape[:2]
    if frames != state.num_frames:
        raise ValueError(f"pixel_values has {frames} frames but the model was patched for num_frames="
                         f"{state.num_frames}")
    x = vision.pre_layrnorm(vision.embeddings(pixel_values.flatten(0, 1)))
    state.start(videos, torch.ones(x.shape[:2], dtype=torch.float32, device=x.device))
    temporal_pos = getattr(vision, TEMPORAL_POS, None)
    for index, layer in enumerate(vision.encoder.layers):
        x = tempme_layer_forward(layer, x, state, index, temporal_pos)
    c = x.shape[-1]
    cls = vision.post_layernorm(x[:, : state.frames_per_clip]).reshape(videos, frames, c)
    return x.reshape(videos, -1, c), cls


def _video_class(cls: type) -> type:
    def forward(self, pixel_values=None, *args, **kwargs):
        if isinstance(pixel_values, torch.Tensor) and pixel_values.dim() == 5:
            from transformers.modeling_outputs import BaseModelOutputWithPooling
            tokens, frame_cls = video_tokens(self, pixel_values)
            return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=frame_cls.mean(1))
        return cls.forward(self, pixel_values, *args, **kwargs)

    return type(f"TempMe{cls.__name__}", (cls,), {"forward": forward, "_tempme_original_class": cls})


def patch(model: nn.Module, num_frames: int, config: TempMeConfig | None = None) -> nn.Module:
    """Apply TempMe to the vision tower of ``model`` (``CLIPModel`` or ``CLIPVisionModel``) in place; returns it.

    num_frames: frames per video; must be divisible by the product of ``config.frame_groups``.
    config: ``TempMeConfig`` (default: TempMe's ViT-B/32 setting); its merge layers must lie below the depth.
    Adds ``len(config.frame_groups)`` zero-initialised temporal position embeddings (``[group, hidden]`` each)
    as parameters named ``tempme_temporal_pos.<level>`` when ``config.temporal_pos``.
    """
    config = TempMeConfig() if config is None else config
    if not isinstance(config, TempMeConfig):
        raise TypeError(f"config must be a TempMeConfig, got {type(config).__name__}")
    vision = vision_tower(model)
    check_transformers()
    config.check(len(vision.encoder.layers), num_frames)
    if hasattr(vision, "_tempme_state"):
        unpatch(model)
    ref = vision.embeddings.class_embedding
    if config.temporal_pos:
        setattr(vision, TEMPORAL_POS, nn.ParameterList(
            [nn.Parameter(torch.zeros(g, ref.shape[-1], dtype=ref.dtype, device=ref.device))
             for g in config.frame_groups]))
    vision._tempme_state = TempMeState(r=[], config=config, num_frames=num_frames)
    vision.__class__ = _video_class(type(vision))
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo ``patch``: the original vision class, no state, no temporal embeddings."""
    vision = vision_tower(model)
    if not hasattr(vision, "_tempme_state"):
        return model
    vision.__class__ = type(vision)._tempme_original_class
    del vision._tempme_state
    if hasattr(vision, TEMPORAL_POS):
        delattr(vision, TEMPORAL_POS)
    return model


def encode_video(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """``[B, F, 3, H, W]`` -> ``[B, D]``: the mean over frames of the class tokens after the post-layernorm
    and the visual projection (when ``model`` has one) of a TempMe-patched model."""
    vision = vision_tower(model)
    if not hasattr(vision, "_tempme_state"):
        raise ValueError("model is not patched with leanops.tempme.patch")
    _, frame_cls = video_tokens(vision, pixel_values)
    proj = _projection(model)
    return (proj(frame_cls) if proj is not None else frame_cls).mean(1)


def tokens_per_layer(model: nn.Module) -> list[int]:
    """Tokens per video of the last forward: the input count, then the count after every layer."""
    return list(_state(model).trace)
