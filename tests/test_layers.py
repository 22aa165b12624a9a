"""The layers point one way (DESIGN §1), and no module imports itself in a circle.

faces (``cli``, ``tui``) → the Phone API (``ua.phone``, ``ua.commands``, ``ua.events``,
``ua.bus``) → the rest of ``ua`` → ``sip``, ``media``, ``transport``, ``config``. ``sip``
is pure: the standard library and itself only. Every import counts — at module level or
inside a function (where cycles like to hide) — except those under ``if TYPE_CHECKING:``,
which never run.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "softphone"
STDLIB = set(sys.stdlib_module_names)
API = {"softphone.ua.phone", "softphone.ua.commands", "softphone.ua.events", "softphone.ua.bus"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative ones resolved), TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text(), str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:  # ``from . import rtp`` imports a module
                candidate = f"{module}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                        (ROOT.parent / candidate.replace(".", "/") / "__init__.py").exists():
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _internal(module: str) -> bool:
    return module == "softphone" or module.startswith("softphone.")


def _violations(source_prefix: str, allowed) -> list[str]:
    out = []
    for module, imports in GRAPH.items():
        if module != source_prefix and not module.startswith(source_prefix + "."):
            continue
        for target in sorted(imports):
            if not allowed(target):
                out.append(f"{module} imports {target}")
    return out


def test_the_graph_was_read():
    assert "softphone.sip.invite" in GRAPH and "softphone.ua.stack" in GRAPH
    assert "softphone.sip.message" in GRAPH["softphone.sip.invite"]


def test_sip_is_pure_standard_library_and_itself():
    def allowed(target: str) -> bool:
        top = target.split(".")[0]
        if _internal(target):
            return target.startswith("softphone.sip")
        return top in STDLIB and top not in ("asyncio", "socket", "selectors", "ssl",
                                             "threading", "time")
    assert _violations("softphone.sip", allowed) == []


def test_media_and_transport_do_not_reach_up():
    def allowed(target: str) -> bool:
        return not _internal(target) or target.startswith(("softphone.media", "softphone.sip"))
    assert _violations("softphone.media", allowed) == []
    assert _violations("softphone.transport", allowed) == []


def test_config_needs_only_the_sip_uri_parser():
    def allowed(target: str) -> bool:
        return not _internal(target) or target.startswith(("softphone.config", "softphone.sip"))
    assert _violations("softphone.config", allowed) == []


def test_the_ua_never_imports_a_face():
    def allowed(target: str) -> bool:
        return not target.startswith(("softphone.cli", "softphone.tui", "softphone.history",
                                      "softphone.scenario"))
    assert _violations("softphone.ua", allowed) == []


@pytest.mark.parametrize("face", ["softphone.cli", "softphone.tui", "softphone.scenario"])
def test_faces_reach_the_ua_only_through_the_phone_api(face):
    def allowed(target: str) -> bool:
        if target.startswith("softphone.ua"):
            return target in API or target == "softphone.ua"
        if target.startswith(("softphone.sip", "softphone.media", "softphone.transport")):
            return False
        return True
    assert _violations(face, allowed) == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over the internal graph."""
    # a module always runs its parent packages' __init__ first: that is no cycle
    internal = {m: {t for t in ts if t in GRAPH and t != m and not m.startswith(t + ".")}
                for m, ts in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in internal[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for module in internal:
        if module not in index:
            strong(module)
    assert cycles == []
