"""Layering of leanops.minions: no import cycle among its modules (lazy imports inside functions count too:
the cycle this replaced, runner <-> lean_gpt2, was one), the engine written against the runner protocol,
and every runner implementing that protocol."""
import ast
import pathlib

import pytest
import torch

import leanops.minions as pkg

PACKAGE = pathlib.Path(pkg.__file__).parent


def _internal_imports(path: pathlib.Path) -> set:
    """Modules of this package that ``path`` imports, anywhere in the file (``from . import x``,
    ``from .x import y``, ``import leanops.minions.x``, ``from leanops.minions.x import y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # relative to this package
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.level == 0 and (node.module or "").startswith("leanops.minions"):
                rest = node.module.split(".")[2:]
                found.update([rest[0]] if rest else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["leanops", "minions"] and len(parts) > 2:
                    found.add(parts[2])
    return found


def _graph() -> dict:
    modules = {p.stem: p for p in PACKAGE.glob("*.py")}
    return {name: _internal_imports(p) & set(modules) - {name} for name, p in modules.items()}


def _find_cycle(graph: dict):
    """A cycle as a list of modules, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_sees_lazy_and_absolute_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from . import x\nfrom .y import z\nimport leanops.minions.w\n"
                   "def f():\n    from leanops.minions.v import u\n    from leanops.minions import t\n")
    assert _internal_imports(src) == {"x", "y", "w", "v", "t"}


def test_no_import_cycle_in_minions():
    graph = _graph()
    assert {"engine", "runner", "lean_gpt2", "live_slots", "runner_protocol", "policy"} <= set(graph)
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph))}"


def test_layers_depend_downwards():
    graph = _graph()
    assert graph["live_slots"] == set() and graph["runner_protocol"] == set()  # leaves
    assert graph["policy"] == set()  # pure decisions: no runners, no engine
    assert "runner" not in graph["lean_gpt2"]  # the old cycle
    assert "lean_gpt2" not in graph["engine"] and "runner_protocol" in graph["engine"]


def test_engine_knows_runners_by_the_protocol_only():
    """The engine gets its runners from ``make_runner`` and uses them as ``Runner``s: no concrete class."""
    tree = ast.parse((PACKAGE / "engine.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {"HFRunner", "CallableRunner", "LeanGPT2Runner"} & names
    assert {"make_runner", "Runner"} <= names


@pytest.mark.parametrize("kind", ["hf", "lean", "callable"])
def test_every_runner_implements_the_protocol(kind):
    transformers = pytest.importorskip("transformers")
    from leanops.minions.runner import make_runner
    from leanops.minions.runner_protocol import Runner

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    if kind == "callable":
        model = (lambda m: (lambda ids: m(input_ids=ids).logits))(model)
    runner = make_runner(model, 2, "cpu", lean=kind == "lean")
    assert type(runner).__name__ == {"hf": "HFRunner", "lean": "LeanGPT2Runner", "callable": "CallableRunner"}[kind]
    assert isinstance(runner, Runner)
    tokens, valid = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    assert runner.feed(tokens, valid).shape == (2, 3, 20)
    assert runner.count.tolist() == [3, 2]
    runner.keep(torch.tensor([2, 1]))
    assert runner.count.tolist() == [2, 1]
