"""The tree shows the design: imports run one way, every public name says what it is.

A small static check over ``src/cheerful`` (no import is executed): every ``import`` and
``from ... import`` statement, at module level or inside a function, is an edge between
two cheerful modules. The graph must have no cycle, and the layers of DESIGN.md hold:
the shared task model at the top of the package imports neither way to run; the durable
side never imports the driven side; nothing but the CLI package imports the CLI; the
base of a protocol never imports its implementations.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import cheerful

SRC = Path(cheerful.__file__).parent
PACKAGE = "cheerful"
MAX_LINES = 500

SHARED = "shared task model"
LAYERS = {  # the first matching prefix names a module's layer
    "cheerful.cli": "cli",
    "cheerful.dashboard": "dashboard",
    "cheerful.driven": "driven",
    "cheerful.joblib": "driven",  # joblib's backend, named for its import
    "cheerful.durable": "durable",
    "cheerful.__main__": "cli",
    "cheerful": SHARED,
}
FORBIDDEN = {  # layer -> layers it must never import
    SHARED: {"cli", "dashboard", "driven", "durable"},
    "durable": {"cli", "dashboard", "driven"},
    "driven": {"cli", "dashboard"},
    "dashboard": {"cli", "driven"},
}
PROTOCOL_BASES = [  # the base of each protocol, and the package of its implementations
    ("cheerful.durable.queues.base", "cheerful.durable.queues"),
    ("cheerful.durable.stores.base", "cheerful.durable.stores"),
    ("cheerful.driven.plans.base", "cheerful.driven.plans"),
    ("cheerful.pool", "cheerful.driven.plans"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py")) if "__pycache__" not in p.parts}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _known(name: str) -> str | None:
    """The cheerful module ``name`` refers to (a module, or the package that holds it)."""
    modules = _modules()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def _graph() -> dict[str, set[str]]:
    """Edges between cheerful modules, from every import statement (lazy ones too)."""
    graph: dict[str, set[str]] = {}
    for module, path in _modules().items():
        edges = graph.setdefault(module, set())
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                # `from pkg import sub` imports the submodule when there is one
                names = [f"{source}.{alias.name}" for alias in node.names] + [source]
                names = [n for n in names if n in _modules()] or [source]
            else:
                continue
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    target = _known(name)
                    if target is not None and target != module:
                        edges.add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> str:
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} is in no layer")


def _is_public_package_init(module: str) -> bool:
    return module == PACKAGE


def test_the_checker_sees_lazy_imports_and_cycles():
    tree = ast.parse("def f():\n    from .b import x\n")
    assert isinstance(next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)), ast.AST)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _resolve("cheerful.driven.mapping", False, 1, "scheduler") == "cheerful.driven.scheduler"
    assert _resolve("cheerful.durable", True, 1, "job") == "cheerful.durable.job"
    assert _resolve("cheerful.durable.worker.loop", False, 2, None) == "cheerful.durable"


def test_the_graph_covers_the_package():
    graph = _graph()
    assert len(graph) > 40
    assert "cheerful.driven.mapping" in graph["cheerful"]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (each line: modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_imports_follow_the_layers():
    wrong = []
    for module, targets in _graph().items():
        if _is_public_package_init(module):
            continue  # `import cheerful` re-exports the public names of both ways to run
        layer = _layer(module)
        for target in sorted(targets):
            if _layer(target) in FORBIDDEN.get(layer, set()):
                wrong.append(f"{module} ({layer}) imports {target} ({_layer(target)})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("base", "package"), PROTOCOL_BASES)
def test_a_protocol_base_never_imports_its_implementations(base, package):
    assert base in _graph(), f"{base} is gone: update PROTOCOL_BASES"
    implementations = {
        m for m in _graph() if m.startswith(package + ".") and m != base and m != package
    }
    assert not (_graph()[base] & implementations), sorted(_graph()[base] & implementations)


def test_no_module_over_500_lines():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (each owns two things: split it): {long}"


def _public_definitions(tree: ast.Module):
    for node in tree.body:
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        if isinstance(node, kinds) and not node.name.startswith("_"):
            yield node


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for module, path in _modules().items():
        if any(part.startswith("_") for part in module.split(".")[1:]):
            continue  # private modules
        for node in _public_definitions(ast.parse(path.read_text())):
            if ast.get_docstring(node) is None:
                missing.append(f"{module}.{node.name}")
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_every_public_function_is_annotated():
    missing = []
    for module, path in _modules().items():
        if module.endswith(".boot"):
            continue  # sent to SSH hosts as source text, for any Python 3
        for node in _public_definitions(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                continue
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            params += [a for a in (args.vararg, args.kwarg) if a is not None]
            bare = [a.arg for a in params if a.annotation is None]
            if bare or node.returns is None:
                missing.append(f"{module}.{node.name}({', '.join(bare)})")
    assert not missing, "public functions without annotations:\n" + "\n".join(missing)


def _public_methods():
    """(name, function, class) of every public method and property of every public class."""
    import importlib
    import inspect
    import pkgutil

    for info in pkgutil.walk_packages(cheerful.__path__, "cheerful."):
        private = any(part.startswith("_") for part in info.name.split(".")[1:])
        if private or info.name.endswith(".boot"):
            continue
        module = importlib.import_module(info.name)
        for class_name, cls in vars(module).items():
            if class_name.startswith("_") or not inspect.isclass(cls):
                continue
            if cls.__module__ != info.name:
                continue
            for name, member in vars(cls).items():
                fn = member.fget if isinstance(member, property) else member
                fn = getattr(fn, "__func__", fn)
                if not name.startswith("_") and inspect.isfunction(fn):
                    yield f"{info.name}.{class_name}.{name}", fn, cls


def test_every_public_method_has_a_docstring_or_overrides_a_documented_one():
    missing = [
        where
        for where, fn, cls in _public_methods()
        if not fn.__doc__
        and not any(getattr(getattr(base, fn.__name__, None), "__doc__", None) for base in cls.__mro__[1:])
    ]
    assert not missing, "public methods without a docstring:\n" + "\n".join(missing)


def test_every_public_method_is_annotated():
    import inspect

    missing = []
    for where, fn, _ in _public_methods():
        if where.startswith("cheerful.cli."):
            continue  # click builds their signatures
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())[1:]  # self or cls
        bare = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if bare or signature.return_annotation is inspect.Signature.empty:
            missing.append(f"{where}({', '.join(bare)})")
    assert not missing, "public methods without annotations:\n" + "\n".join(missing)
