"""Every method's ``leanops demo`` section runs in quick mode and prints its table (SCPNet's tiny run is in
test_scpnet_experiment.py). Each takes 4-25 s on the 2-core CPU; checks name what each section must show."""
import pytest

from leanops.demo import method_demos

# method -> strings its quick section must print (a header, the rows of its comparison)
EXPECTED = {
    "bandit": ["Delayed-feedback bandits", "dts_em", "bayes_grid", "experiment store (SQLite, WAL)",
               "next 500 assignments"],
    "blend": ["ads blended with organic items", "vb_org", "batched re-solves"],
    "dadnn": ["DADNN", "Bayes optimal (ceiling)", "shared model (scene id feature)", "DADNN-MLP (heads + KT)",
              "per-scene heads, 200 scenes"],
    "pdg": ["PDG", "with reviews", "without reviews"],
    "contrastive": ["group-wise contrastive", "continued MLE", "contrastive ", "rank acc"],
    "tempme": ["TempMe", "tokens per video after each layer: [600,", "per-frame ToMe", "paired differences"],
    "pyra": ["PYRA on all-MiniLM-L6-v2", "ToMe + LoRA (high)", "PYRA + LoRA (high)",
             "equals ToMe: True"],
}


def test_every_method_demo_is_covered():
    assert set(method_demos()) - {"scpnet"} == set(EXPECTED)


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_quick_demo_section_runs(method, capsys, tmp_path, monkeypatch):
    import importlib

    import torch

    monkeypatch.chdir(tmp_path)  # a section must not write into the checkout
    threads = torch.get_num_threads()
    importlib.import_module(f"leanops.{method}.demo").section(True)
    assert torch.get_num_threads() == threads  # a section that changes the thread count puts it back
    out = capsys.readouterr().out
    missing = [s for s in EXPECTED[method] if s not in out]
    assert not missing, f"{method} demo did not print {missing}:\n{out[-3000:]}"
    assert list(tmp_path.iterdir()) == [], f"{method} demo wrote files: {list(tmp_path.iterdir())}"
