"""Minions engine vs Hugging Face, batch 1, each LLM runner with its own anchor: on the HF runner plain
greedy, assisted generation with one SSM and Minions default; on the lean runner plain greedy, one SSM at
gamma 4 and Minions default (one engine per row, reused across calls as in use), on
the cached demo models (or tiny random GPT-2s when none are trained: then the figures say nothing about
speed-ups). pytest-benchmark times each row on its own; ratios with their spread over interleaved repeats
come from `leanops bench minions` (leanops.bench.timing)."""
import pytest
import torch

from conftest import QUICK

transformers = pytest.importorskip("transformers")

from leanops.minions import Minions, demo_models, lean_gpt2  # noqa: E402


def _models():
    found = None if QUICK else demo_models.load_first()[1]  # quick smoke runs never load the big models
    if found is not None:
        return found[0], found[1]
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2(layers, width, seed):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=width, n_head=2, vocab_size=256,
                                          n_positions=128, eos_token_id=None, bos_token_id=None)).eval()
    return gpt2(2, 64, 0), [gpt2(1, 32, i) for i in (1, 2, 3)]


LLM, SSMS = _models()
LLM.generation_config.eos_token_id = None
NEW = 8 if QUICK else 64
PROMPT = torch.randint(1, 256, (1, 16), generator=torch.Generator().manual_seed(0))

PROVIDERS = {
    "hf greedy": lambda: LLM.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=NEW,
                                      do_sample=False, pad_token_id=0),
    "hf assisted (ssm0)": lambda: LLM.generate(PROMPT, attention_mask=torch.ones_like(PROMPT),
                                               assistant_model=SSMS[0], max_new_tokens=NEW, do_sample=False,
                                               pad_token_id=0),
    "leanops greedy (lean prepacked runner)": lambda: lean_gpt2.greedy(LLM, PROMPT, NEW),
    "leanops minions default (hf runner)": lambda e=Minions(LLM, SSMS): e.generate(PROMPT, max_new_tokens=NEW),
    "leanops 1 ssm, gamma 4 (lean runner)": lambda e=Minions(LLM, SSMS[:1], adaptive=False, lean_llm=True): e.generate(
        PROMPT, max_new_tokens=NEW),
    "leanops minions default (lean runner)": lambda e=Minions(LLM, SSMS, lean_llm=True): e.generate(
        PROMPT, max_new_tokens=NEW),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_minions_decode(benchmark, provider):
    benchmark.group = f"minions greedy decode, batch 1, {NEW} new tokens"
    with torch.no_grad():
        out = benchmark(PROVIDERS[provider])
        want = PROVIDERS["hf greedy"]()
    assert torch.equal(out, want)  # every provider decodes the LLM's own greedy output
