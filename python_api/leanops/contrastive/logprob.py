"""Sequence log-likelihood ``log p(response | context)`` for Hugging Face causal and seq2seq models.

Inputs are padded id tensors with attention masks (1 = token, 0 = padding); padding may sit on either
side or anywhere. Each row's real tokens are first packed to the left, so the result of a batch equals
the result of each row alone: a causal model sees ``context + response`` right-padded (pads after the
last real token cannot change an earlier logit), a seq2seq model encodes the packed context under its
mask and decodes the packed response after ``decoder_start_token_id``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import shared_context


def is_encoder_decoder(model) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def _check_ids(name: str, ids, mask_name: str, mask) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        got = f"{ids.dtype} tensor of shape {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"{name} must be a 2-D integer tensor [N, length], got {got}")
    if mask is None:
        return torch.ones_like(ids, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{mask_name} must be a tensor of the same shape as {name} {tuple(ids.shape)}, got {got}")
    return mask.bool()


def pack_left(ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Moves each row's real tokens to the front (order kept), pads the rest with ``pad_id``."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    packed_mask = mask.gather(1, order)
    packed = torch.where(packed_mask, ids.gather(1, order), torch.full_like(ids, pad_id))
    return packed, packed_mask


SHARE_BELOW = 0.75


def check_share_context(share_context) -> None:
    if share_context is not None and not isinstance(share_context, bool):
        raise TypeError(f"share_context must be None, True or False, got {share_context!r}")


def _distinct_if_shared(model, encdec: bool, ctx, c_len, share_context: bool | None):
    """``shared_context.distinct_contexts`` when the contexts' forward is shared, else None."""
    check_share_context(share_context)
    if share_context is False:
        return None
    supported = shared_context.supports_sharing(model, encdec)
    if share_context is True and not supported:
        needs = ("get_encoder and an encoder_outputs argument" if encdec else
                 "a KV cache, position_ids and use_cache arguments, and no gradient checkpointing in training")
        raise ValueError(f"share_context=True: {type(model).__name__} cannot share a context's forward (it needs "
                         f"{needs})")
    if not supported:
        return None
    distinct = shared_context.distinct_contexts(ctx, c_len)
    if share_context is None and distinct[0].shape[0] > SHARE_BELOW * ctx.shape[0]:
        return None
    return distinct


def _pad_id(model) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def sequence_logprob(model, context_ids: torch.Tensor, response_ids: torch.Tensor,
                     context_mask: torch.Tensor | None = None, response_mask: torch.Tensor | None = None,
                     return_token_counts: bool = False, share_context: bool | None = None):
    """[N] float32 sums of ``log p(response token | context, earlier response tokens)``.

    Causal LMs score ``context + response`` and keep the response positions (each row needs at least one
    context token: the first response token is predicted from the last context token). Seq2seq models
    (``config.is_encoder_decoder``) encode the context and decode the response. With
    ``return_token_counts=True`` also returns the [N] number of response tokens.

    ``share_context``: run each distinct context once (``shared_context``; same result) instead of one
    forward over every row's ``context + response``. ``None`` (default) shares when at most
    ``SHARE_BELOW`` of the rows have distinct contexts (a group-wise batch: 3 of 5 rows at k = 1), and the
    model supports it; ``True`` always, ``False`` never."""
    cmask = _check_ids("context_ids", context_ids, "context_mask", context_mask)
    rmask = _check_ids("response_ids", response_ids, "response_mask", response_mask)
    if context_ids.shape[0] != response_ids.shape[0]:
        raise ValueError(f"context_ids and response_ids must have the same number of rows, got "
                         f"{context_ids.shape[0]} and {response_ids.shape[0]}")
    r_len = rmask.sum(1)
    if (r_len == 0).any():
        rows = torch.nonzero(r_len == 0).flatten()[:5].tolist()
        raise ValueError(f"response_ids has an empty response (no unmasked token) in rows {rows}; "
                         f"every response needs at least one token to score")
    c_len = cmask.sum(1)
    encdec = is_encoder_decoder(model)
    if not encdec and (c_len == 0).any():
        rows = torch.nonzero(c_len == 0).flatten()[:5].tolist()
        raise ValueError(f"context_ids has an empty context in rows {rows}; a causal model needs at least one "
                         f"context token (e.g. a BOS token) to predict the first response token")
    pad = _pad_id(model)
    device = next(model.parameters()).device
    ctx, cmask = pack_left(context_ids.long(), cmask, pad)
    resp, rmask = pack_left(response_ids.long(), rmask, pad)
    ctx, cmask, resp, rmask = (t.to(device) for t in (ctx, cmask, resp, rmask))
    c_len, r_len = c_len.to(device), r_len.to(device)
    targets = resp.masked_fill(~rmask, -100)
    distinct = _distinct_if_shared(model, encdec, ctx, c_len, share_context)
    if encdec:
        start = model.config.decoder_start_token_id
        if start is None:
            raise ValueError("model.config.decoder_start_token_id is None: a seq2seq model needs it to decode")
        dec_in = torch.cat([torch.full_like(resp[:, :1], int(start)), resp[:, :-1]], dim=1)
        dec_mask = torch.cat([torch.ones_like(rmask[:, :1]), rmask[:, :-1]], dim=1)
        if distinct is not None:
            logits = shared_context.seq2seq_logits(model, distinct, cmask, dec_in, dec_mask)
        else:
            logits = model(input_ids=ctx, attention_mask=cmask.long(), decoder_input_ids=dec_in,
                           decoder_attention_mask=dec_mask.long()).logits
    elif distinct is not None:
        logits = shared_context.causal_response_logits(model, distinct, c_len, resp, rmask, pad)
    else:
        # context then response, right-padded: row i holds c_len_i context tokens then r_len_i response tokens
        total = c_len + r_len
        width = int(total.max())
        pos = torch.arange(width, device=device)[None, :]
        in_ctx = pos < c_len[:, None]
        r_pos = (pos - c_len[:, None]).clamp(0, resp.shape[1] - 1)
        c_pos = pos.clamp(max=ctx.shape[1] - 1)
        ids = torch.where(in_ctx, ctx.gather(1, c_pos.expand(len(ctx), -1)), resp.gather(1, r_pos))
        valid = pos < total[:, None]
        ids = ids.masked_fill(~valid, pad)
        logits = model(input_ids=ids, attention_mask=valid.long()).logits
        # the logit at position c_len - 1 + j predicts response token j
        gather_pos = (c_len[:, None] - 1 + torch.arange(resp.shape[1], device=device)[None, :]).clamp(max=width - 1)
        logits = logits.gather(1, gather_pos[..., None].expand(-1, -1, logits.shape[-1]))
    token_logp = -F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
    out = token_logp.sum(1)
    return (out, r_len) if return_token_counts else out
