"""The package's shape: imports run one way, the site build stays torch-free, every rung file reads in
one order, and the book's rungs share one budget."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import registry
from zoo.config import BOOK_PRESET

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zoo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def zoo_imports(path: Path, modules: set[str]) -> set[str]:
    """Every zoo module ``path`` imports, at module level or inside a function."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from zoo import registry` imports the module zoo.registry; `from zoo.x import name` imports zoo.x
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): zoo_imports(p, modules) - {module_name(p)} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_no_import_cycle_in_zoo():
    graph = import_graph()
    assert graph["zoo.cli"] >= {"zoo.book", "zoo.registry"}  # the scan sees imports at all
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_models_import_only_torch_nn_the_registry_and_hook_points():
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("zoo.models."):
            assert imports <= {"zoo.nn", "zoo.registry", "zoo.errors", "zoo.hooks"}, (module, imports)


def test_the_site_build_imports_no_torch():
    code = "import sys; import zoo.book.placeholders, zoo.book.layout; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ rung files
def registered_classes():
    """(rung name, class node, module AST body) for every rung registered in zoo/models/."""
    for path in sorted((PACKAGE / "models").glob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node in body:
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register" for d in node.decorator_list):
                yield path.name, node, body


def class_attributes(node: ast.ClassDef) -> list[tuple[int, str]]:
    """(position in the class body, name) of each plain assignment or method."""
    out = []
    for i, item in enumerate(node.body):
        if isinstance(item, ast.Assign):
            out += [(i, t.id) for t in item.targets if isinstance(t, ast.Name)]
        elif isinstance(item, ast.FunctionDef):
            out.append((i, item.name))
    return out


@pytest.mark.parametrize("filename, node, body", list(registered_classes()), ids=lambda x: getattr(x, "name", None))
def test_every_rung_file_reads_in_one_order(filename, node, body):
    """Config above the model class; in the class, forward is the last method (followed only by unembed,
    the read-out forward ends with, where the rung has a residual stream) and presets the last statement;
    context_length is set in __init__ (one convention), never in the class body."""
    names = dict((name, i) for i, name in class_attributes(node))
    assert "presets" in names and names["presets"] == len(node.body) - 1, f"{filename}: presets must close the class"
    methods = [i for i, item in enumerate(node.body) if isinstance(item, ast.FunctionDef)]
    if "forward" in names:
        last = [node.body[i].name for i in methods if i > names["forward"]]
        assert last in ([], ["unembed"]), f"{filename}: forward must be the class's last method (then unembed, if any), not followed by {last}"
    assert "context_length" not in names, f"{filename}: set context_length in __init__"
    config = next(item for item in node.body if isinstance(item, ast.Assign) and item.targets[0].id == "Config").value.id
    config_pos = next(i for i, n in enumerate(body) if isinstance(n, ast.ClassDef) and n.name == config)
    assert config_pos < body.index(node), f"{filename}: {config} comes before the model class"


def test_every_rung_has_an_instance_context_length():
    for info in registry.infos():
        model = registry.build(info.name, vocab_size=7, block_size=16)
        assert "context_length" in vars(model), info.name


def test_the_template_is_a_working_causal_rung():
    from zoo.models._template import Template

    model = Template(Template.Config(vocab_size=7, block_size=16))
    idx = torch.randint(0, 7, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 7
    assert logits.shape == (2, 12, 7) and model.context_length is None
    assert torch.equal(model(changed)[:, :6], logits[:, :6])
    assert set(Template.presets) >= {"quick", "book"}
    with pytest.raises(ValueError, match="n_embd"):
        Template(Template.Config(vocab_size=7, n_embd=0))


# ------------------------------------------------------------------------------------------- the budget
def test_every_trained_rung_from_chapter_02_shares_the_books_budget():
    """The chapters compare rungs at one budget: the same characters per step and the same steps."""
    budgets = {}
    for info in registry.infos():
        if info.chapter is None or info.chapter < "02" or not info.trainable:
            continue
        config = zoo.make_config(info.name, BOOK_PRESET)
        budgets[info.name] = (config.data.batch_size * config.data.block_size, config.trainer.max_steps)
    assert len(budgets) >= 7, budgets
    assert len(set(budgets.values())) == 1, budgets


# ------------------------------------------------------------------------------------ derived settings
def test_vaswani_peak_lr_follows_its_config_by_the_papers_formula():
    book = zoo.make_config("vaswani", BOOK_PRESET)
    assert book.optim.lr == 128**-0.5 * 200**-0.5  # d_model^-0.5 · warmup^-0.5, exactly as the book trained
    narrow = zoo.make_config("vaswani", BOOK_PRESET, overrides={"model": {"n_embd": 64}, "optim": {"warmup_steps": 400}})
    assert narrow.optim.lr == pytest.approx(64**-0.5 * 400**-0.5)
    assert zoo.make_config("vaswani", BOOK_PRESET, overrides={"optim": {"lr": 1e-3}}).optim.lr == 1e-3


def test_an_unset_lr_without_a_rule_is_a_clear_error():
    with pytest.raises(zoo.ZooError, match="no rule"):
        zoo.make_config("bigram", overrides={"optim": {"lr": None}})
