"""Logits of each response token when many rows share a context: the context runs once.

A group-wise batch repeats each observed context in ``1 + 2k`` rows (the observed reply and the k positive
and k negative replies sampled on the response side), so a plain forward runs the same context tokens
``1 + 2k`` times through the model and the reference. Here each distinct context runs once:

* causal LM: the distinct contexts run right-aligned (left-padded, positions counted from each row's first
  real token) with a KV cache and only the last position's logit kept (it predicts the first response
  token); the cache is gathered to one copy per row and the response runs after it, its positions
  continuing from the context's length. Autograd flows through the gathered cache, so every row's
  gradient reaches its context's forward.
* encoder-decoder: the distinct contexts are encoded once and the encoder states gathered per row.

Both give the logits of the single concatenated forward (to float rounding; tested). Inputs here are
left-packed (real tokens first, as ``logprob.pack_left`` makes them) and already on the model's device.
"""
from __future__ import annotations

import functools
import inspect

import torch


def distinct_contexts(ctx: torch.Tensor, c_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(distinct packed contexts [G, L], their lengths [G], row -> distinct index [N]).

    The length is part of the key: a context whose last real token equals the pad id is not the shorter one."""
    keys = torch.cat([c_len[:, None].to(ctx.dtype), ctx], dim=1)
    uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
    return uniq[:, 1:], uniq[:, 0].to(c_len.dtype), inverse


def _forward_params(model) -> frozenset:
    """The argument names of the model's forward, read once per forward function rather than on every step
    (a forward replaced on the instance, e.g. by a hook library, is read as what it is)."""
    return _signature_params(getattr(model.forward, "__func__", model.forward))


@functools.lru_cache(maxsize=None)
def _signature_params(forward) -> frozenset:
    return frozenset(inspect.signature(forward).parameters)


def supports_sharing(model, encoder_decoder: bool) -> bool:
    """Seq2seq: an encoder to call alone. Causal: a KV cache argument, explicit positions, and no gradient
    checkpointing in training (it drops the cache)."""
    params = _forward_params(model)
    if encoder_decoder:
        return hasattr(model, "get_encoder") and "encoder_outputs" in params
    checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    if checkpointing and model.training:
        return False
    return _cache_argument(model) is not None and all(p in params for p in ("position_ids", "use_cache"))


def _cache_argument(model) -> str | None:
    """The KV cache's argument (and output field) name: ``cache`` from transformers 5.2x, before that
    ``past_key_values``."""
    params = _forward_params(model)
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def causal_response_logits(model, distinct, c_len, resp, rmask, pad_id: int) -> torch.Tensor:
    """[N, R, V] logits; position j predicts response token j (as the single forward's gathered logits).
    ``distinct`` is ``distinct_contexts(ctx, c_len)``."""
    u_ctx, u_len, inverse = distinct
    width = u_ctx.shape[1]
    pos = torch.arange(width, device=u_ctx.device)[None, :]
    shift = (width - u_len)[:, None]  # left padding of each distinct context
    real = pos >= shift
    src = (pos - shift).clamp(min=0)
    right_aligned = torch.where(real, u_ctx.gather(1, src), torch.full_like(u_ctx, pad_id))
    keep = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}
    out = model(input_ids=right_aligned, attention_mask=real.long(), position_ids=src, use_cache=True, **keep)
    first = out.logits[:, -1][inverse]  # [N, V]: the last context token predicts response token 0
    if resp.shape[1] == 1:
        return first[:, None]
    name = _cache_argument(model)
    cache = getattr(out, name)
    cache.batch_select_indices(inverse)
    steps = resp.shape[1] - 1  # the last response token predicts nothing that is scored
    r_pos = c_len[:, None] + torch.arange(steps, device=resp.device)[None, :]
    mask = torch.cat([real[inverse], rmask[:, :steps]], dim=1)
    rest = model(input_ids=resp[:, :steps], attention_mask=mask.long(), position_ids=r_pos,
                 use_cache=True, **{name: cache}).logits
    return torch.cat([first[:, None], rest], dim=1)


def seq2seq_logits(model, distinct, cmask, dec_in, dec_mask) -> torch.Tensor:
    """[N, R, V] decoder logits with each distinct context encoded once."""
    from transformers.modeling_outputs import BaseModelOutput

    u_ctx, u_len, inverse = distinct
    u_mask = torch.arange(u_ctx.shape[1], device=u_ctx.device)[None, :] < u_len[:, None]
    states = model.get_encoder()(input_ids=u_ctx, attention_mask=u_mask.long()).last_hidden_state
    return model(encoder_outputs=BaseModelOutput(last_hidden_state=states[inverse]), attention_mask=cmask.long(),
                 decoder_input_ids=dec_in, decoder_attention_mask=dec_mask.long()).logits
