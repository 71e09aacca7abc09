"""The store owns the run layout: no code outside ``proxysel/store/`` builds a path inside a run folder.

Read from the syntax tree, not grepped, so that strings in messages and docstrings ("no
scores.parquet") do not count and a join does: a ``/`` whose operand is a layout name (a string,
an f-string, a module-level constant bound to one, or one of the store's own constants imported),
or a ``Path(...)``, ``.joinpath(...)`` or ``os.path.join(...)`` given one. Code that needs such a
path asks ``store.RunFolder`` / ``store.Run`` for it (``scores_path``, ``selection_folder``,
``stage_folder``, ``read_selection``, ``recorded_path``, ...).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from proxysel.store import run as store_run

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "proxysel"

#: The names of the run layout (store/run.py's docstring): folders and files of a run folder.
LAYOUT = frozenset({
    "selections", "stages", store_run.SCORES, store_run.EMBEDDINGS, store_run.MANIFEST,
    store_run.SELECTION_TABLE, store_run.SELECTION_META, store_run.REPORT, store_run.FINGERPRINT,
    store_run.COMPLETE, store_run.CONFIG, store_run.DERIVED,
})
#: (file under src/proxysel, layout name) -> why it is not a path inside a run folder.
NOT_A_RUN = {
    ("benchmarking/runner.py", "config.yaml"): "the bench folder's own resolved config; a bench folder "
                                               "holds run folders but is not one",
    ("models/loader.py", "COMPLETE"): "the marker of a dequantized model in the model cache, not a stage's",
}
#: Joins inside a run that are still to move behind the store: files this branch does not own. Each
#: entry must still match (the test fails when one is fixed, so that the entry goes too).
PENDING: dict[tuple[str, str], str] = {}


def _layout_name(text: str) -> str | None:
    """The layout name among the ``/``-separated parts of ``text`` ("stages/x/y.jsonl" -> "stages")."""
    return next((part for part in text.split("/") if part in LAYOUT), None)


def _constants(tree: ast.Module) -> dict[str, str]:
    """Names bound at module level to a layout name: ``X = "meta.json"``, or a proxysel constant
    imported (``from proxysel.store.run import SCORES as S``)."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(value, str) and _layout_name(value):
                    out[target.id] = value
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("proxysel"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if isinstance(value, str) and _layout_name(value):
                    out[alias.asname or alias.name] = value
    return out


def _operand_name(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The layout name ``node`` spells, if any: a string, an f-string's literal parts, or a constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _layout_name(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = (_layout_name(str(v.value)) for v in node.values if isinstance(v, ast.Constant))
        return next((n for n in parts if n), None)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_path_call(node: ast.Call) -> bool:
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if name in ("Path", "PurePath", "PosixPath", "joinpath"):
        return True
    return name == "join" and isinstance(f, ast.Attribute) and ast.unparse(f.value) in ("os.path", "path")


def layout_joins(source: str) -> list[tuple[int, str, str]]:
    """(line, layout name, code) of every join in ``source`` that builds a path inside a run folder."""
    tree = ast.parse(source)
    constants = _constants(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            operands = [node.left, node.right]
        elif isinstance(node, ast.Call) and _is_path_call(node):
            operands = list(node.args)
        else:
            continue
        for operand in operands:
            name = _operand_name(operand, constants)
            if name:
                found.append((node.lineno, name, ast.unparse(node)))
                break
    return found


def scan() -> dict[tuple[str, str], list[str]]:
    """(file, layout name) -> the joins found there, for every module outside store/."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("store/"):
            continue
        for line, name, code in layout_joins(path.read_text(encoding="utf-8")):
            out.setdefault((rel, name), []).append(f"{rel}:{line}: {code}")
    return out


def test_no_module_outside_the_store_builds_a_path_inside_a_run():
    found = scan()
    unexpected = [where for key, wheres in found.items() if key not in NOT_A_RUN and key not in PENDING
                  for where in wheres]
    assert unexpected == [], "ask store.RunFolder for these paths instead:\n" + "\n".join(unexpected)


def test_every_exception_still_applies():
    found = scan()
    stale = [key for key in {**NOT_A_RUN, **PENDING} if key not in found]
    assert stale == [], f"these exceptions no longer match anything; delete them: {stale}"


@pytest.mark.parametrize("code, names", [
    ('run_dir / "selections"', ["selections"]),
    ('run.path / "stages" / name / "COMPLETE"', ["COMPLETE", "stages"]),  # outer join first
    ('Path(run_dir, "manifest.json")', ["manifest.json"]),
    ('Path("runs/r1/scores.parquet")', ["scores.parquet"]),
    ('run_dir.joinpath("selections", name)', ["selections"]),
    ('os.path.join(run_dir, "meta.json")', ["meta.json"]),
    ('run_dir / f"stages/{name}"', ["stages"]),
    ('run_dir / "stages/train-proxy/history.jsonl"', ["stages"]),
    ('"selection.parquet" / folder', ["selection.parquet"]),
])
def test_joins_are_found(code, names):
    assert [name for _, name, _ in layout_joins(code)] == names


def test_constants_are_followed():
    source = ("from proxysel.store.run import MANIFEST, SCORES as S, STORE_VERSION\nMETA = 'meta.json'\n"
              "OTHER = 'x.json'\na = run / MANIFEST\nb = run / S\nc = folder / META\nd = folder / OTHER\n"
              "e = run / STORE_VERSION\n")
    assert [(line, name) for line, name, _ in layout_joins(source)] == [
        (4, "manifest.json"), (5, "scores.parquet"), (6, "meta.json")]


@pytest.mark.parametrize("code", [
    'print("no scores.parquet in", run_dir)',
    'raise UsageError(f"{path} has no selections")',
    'manifest.get("stages")',
    'out / "data" / "pool.jsonl"',
    'stage.path / "history.jsonl"',
    'x = a / b',
])
def test_messages_and_other_names_are_not_joins(code):
    assert layout_joins(code) == []
