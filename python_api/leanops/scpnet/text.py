"""Label-name text embeddings and CoOp-style label prompts through a frozen text encoder.

An encoder is a (tokenizer, model) pair of Hugging Face objects; the default is the real pretrained
all-MiniLM-L6-v2 (``leanops.tome.minilm.load_minilm``, offline). Embeddings are the attention-masked mean of
the last hidden states, L2-normalised (sentence-transformers' pooling for MiniLM)."""
from __future__ import annotations

import torch

TEMPLATE = "a photo of a {name}."
_CACHE: dict = {}
_DEFAULT: list = []


def default_encoder():
    """(tokenizer, model) of all-MiniLM-L6-v2, loaded once per process, frozen."""
    if not _DEFAULT:
        from ..tome.minilm import load_minilm

        tok, model = load_minilm()
        model.requires_grad_(False)
        _DEFAULT.append((tok, model))
    return _DEFAULT[0]


def check_label_names(label_names) -> tuple:
    if isinstance(label_names, str) or not hasattr(label_names, "__iter__"):
        raise TypeError(f"label_names must be a sequence of strings, got {type(label_names).__name__}")
    names = tuple(label_names)
    if len(names) < 2:
        raise ValueError(f"label_names must hold at least 2 names, got {len(names)}")
    for n in names:
        if not isinstance(n, str) or not n.strip():
            raise ValueError(f"label_names must be non-empty strings, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError("label_names must be distinct (a repeated name would make two identical labels)")
    return names


def _check_encoder(encoder):
    if not (isinstance(encoder, (tuple, list)) and len(encoder) == 2 and callable(encoder[0])
            and isinstance(encoder[1], torch.nn.Module)):
        raise TypeError("encoder must be a (tokenizer, model) pair of a Hugging Face tokenizer and text model")
    return encoder


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)


def text_embeddings(label_names, encoder=None, template: str = TEMPLATE) -> torch.Tensor:
    """[C, D] float32 unit-norm embeddings of template.format(name=...) for each label name. Cached in memory
    per (encoder, names, template), so a process encodes a label set once."""
    names = check_label_names(label_names)
    if "{name}" not in template:
        raise ValueError(f"template must contain '{{name}}', got {template!r}")
    tok, model = default_encoder() if encoder is None else _check_encoder(encoder)
    key = (id(model), names, template)
    if key not in _CACHE:
        batch = tok([template.format(name=n) for n in names], padding=True, return_tensors="pt")
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        _CACHE[key] = _mean_pool(hidden, batch["attention_mask"]).float().cpu()
    return _CACHE[key].clone()


class LabelPrompts(torch.nn.Module):
    """CoOp-style prompts: learnable context vectors (initialised from the template's words before the name,
    "a photo of a"), shared by all labels, followed by each label's name tokens, through the frozen encoder.
    forward() -> [C, D] unit-norm label embeddings. With learn_context=False the prompts are the template
    itself, encoded once (no text-encoder pass per step)."""

    def __init__(self, label_names, encoder=None, template: str = TEMPLATE, learn_context: bool = True):
        super().__init__()
        names = check_label_names(label_names)
        tok, model = default_encoder() if encoder is None else _check_encoder(encoder)
        model.requires_grad_(False)
        if learn_context:
            import inspect

            if "inputs_embeds" not in inspect.signature(model.forward).parameters:
                raise ValueError(f"learn_context=True needs a text encoder whose forward takes inputs_embeds "
                                 f"({type(model).__name__} does not); pass learn_context=False")
        self.learn_context = learn_context
        prefix = template.split("{name}")[0].strip()
        ctx_ids = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        batch = tok([template.format(name=n) for n in names], padding=True, return_tensors="pt")
        ids = batch["input_ids"]
        self.register_buffer("input_ids", ids, persistent=False)
        self.register_buffer("attention_mask", batch["attention_mask"], persistent=False)
        self.ctx_start = self._find(ids[0].tolist(), ctx_ids) if ctx_ids else 0
        self.ctx_len = len(ctx_ids)
        self._encoder = [model]  # a list, so the frozen encoder is not a submodule (not saved, not trained)
        self.dim = model.config.hidden_size
        if learn_context and self.ctx_len:
            with torch.no_grad():
                init = model.get_input_embeddings()(ids[:1, self.ctx_start:self.ctx_start + self.ctx_len])[0]
            self.context = torch.nn.Parameter(init.clone().float())
        else:
            self.context = None
            self.register_buffer("fixed", text_embeddings(names, (tok, model), template), persistent=False)

    @staticmethod
    def _find(seq, sub) -> int:
        for s in range(len(seq) - len(sub) + 1):
            if seq[s:s + len(sub)] == sub:
                return s
        raise ValueError("could not locate the template's context words in the tokenised prompt")

    def forward(self) -> torch.Tensor:
        if self.context is None:
            return self.fixed
        model = self._encoder[0]
        emb = model.get_input_embeddings()(self.input_ids)
        ctx = self.context.to(emb.dtype).unsqueeze(0).expand(emb.shape[0], -1, -1)
        emb = torch.cat([emb[:, :self.ctx_start], ctx, emb[:, self.ctx_start + self.ctx_len:]], dim=1)
        hidden = model(inputs_embeds=emb, attention_mask=self.attention_mask).last_hidden_state
        return _mean_pool(hidden, self.attention_mask).float()
