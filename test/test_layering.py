"""The import rules of sl's layers, checked on the source with `ast` (imports inside
functions count too):

- `sl.utils` imports nothing from the domain (llm, datasets, finetuning, evaluation,
  experiment, protocol, external, mnist, phases);
- a driver (`sl.external.*`) imports no phase models (datasets, finetuning, evaluation,
  experiment);
- no import cycles between sl's packages, but for the engine registry: `sl.llm.engines`
  imports each engine's driver lazily (`sl.external.<engine>`), and the drivers implement
  `sl.llm.driver.Driver` on `sl.llm.data_models`. `sl.llm.services` (the original code's
  public API) dispatches through the registry, so it stays in `sl.llm`; this is the only edge
  allowed to close a cycle, and only from `sl.llm.engines`.
"""

import ast
from pathlib import Path

SL = Path(__file__).resolve().parents[1] / "sl"
DOMAIN = ("llm", "datasets", "finetuning", "evaluation", "experiment", "protocol", "external",
          "attribution",
          "mnist", "phases")  # fmt: skip
PHASES = ("datasets", "finetuning", "evaluation", "experiment")
DISPATCH = ("sl.llm.engines", "external")  # the lazy driver factories (see the docstring)


def module_name(path: Path) -> str:
    parts = path.relative_to(SL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(tree: ast.AST, package: str) -> set[str]:
    """The modules `tree` imports (absolute, or relative to `package`), at any depth; for
    `from a import b` both `a` and `a.b` (b may be a module)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def imports_of(path: Path) -> set[str]:
    """The sl modules the sl module at `path` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = imports_in(ast.parse(path.read_text(), str(path)), package)
    return {m for m in found if m == "sl" or m.startswith("sl.")}


def sl_imports() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(SL.rglob("*.py"))}


def package_of(module: str) -> str:
    """The top-level part of sl a module belongs to (`sl.llm.services` -> `llm`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _existing(modules: set[str], known: dict[str, set[str]]) -> set[str]:
    # `from sl.x import name` adds `sl.x.name`: keep only real modules (or their packages).
    return {m for m in modules if m in known or m.rpartition(".")[0] in known}


def forbidden_imports(package: str, targets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(module, import) pairs where a module of sl.`package` imports from sl.`targets`."""
    known = sl_imports()
    return sorted(
        (mod, imp)
        for mod, imps in known.items()
        if package_of(mod) == package
        for imp in _existing(imps, known)
        if package_of(imp) in targets
    )


def test_utils_import_nothing_from_the_domain():
    assert not forbidden_imports("utils", DOMAIN)


def test_drivers_import_no_phase_models():
    assert not forbidden_imports("external", PHASES)


def package_graph() -> dict[str, set[str]]:
    """sl's packages (and top-level modules) and the others each imports."""
    known = sl_imports()
    graph: dict[str, set[str]] = {}
    for mod, imps in known.items():
        src = package_of(mod)
        targets = {package_of(i) for i in _existing(imps, known)} - {src, ""}
        if mod == DISPATCH[0]:
            targets.discard(DISPATCH[1])
        graph.setdefault(src, set()).update(targets)
    graph.pop("", None)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_between_packages():
    cycle = find_cycle(package_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_see_imports_inside_functions_relative_imports_and_cycles():
    code = "def f():\n    from sl.llm import services\n    import sl.datasets\nfrom . import x\n"
    found = imports_in(ast.parse(code), "sl.mnist")
    assert {"sl.llm", "sl.llm.services", "sl.datasets", "sl.mnist", "sl.mnist.x"} <= found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
