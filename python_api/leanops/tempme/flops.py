"""FLOPs of the video encoder, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
attention; a multiply-add counts 2)."""
from __future__ import annotations

import torch
import torch.utils.flop_counter as flop_counter
from torch import nn

from .baselines import encode_frames
from .patch import encode_video, vision_tower


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# SDPA's CPU kernel has no formula in torch's registry (it would count 0): use the GPU kernels' formula
_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_gflops(fn, *args) -> float:
    """GFLOPs of one call of ``fn(*args)`` (no gradient)."""
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=_CUSTOM)
    with torch.no_grad(), counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def flops(model: nn.Module, num_frames: int, image_size: int | None = None, batch: int = 1) -> dict:
    """GFLOPs per video of the TempMe-patched ``model`` (``"tempme"``) and of the same weights encoding every
    frame with all tokens (``"unmerged"``: the image path, unpatched), and their ratio."""
    vision = vision_tower(model)
    if not hasattr(vision, "_tempme_state"):
        raise ValueError("model is not patched with leanops.tempme.patch")
    image_size = vision.config.image_size if image_size is None else image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    ref = vision.embeddings.patch_embedding.weight
    video = torch.zeros(batch, num_frames, 3, image_size, image_size, dtype=ref.dtype, device=ref.device)
    tempme = count_gflops(encode_video, model, video) / batch
    unmerged = count_gflops(encode_frames, model, video) / batch
    return {"tempme": tempme, "unmerged": unmerged, "ratio": unmerged / tempme}
