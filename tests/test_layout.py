"""The package's architecture, read from its imports with `ast` (function-level imports included):
no import cycles, Ray only in launch/, bench/ and envs/, and no module importing another's private
name. The checker itself is tested first on small made-up packages, so each rule can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rbc_ray"
RAY_ALLOWED = ("launch", "bench", "envs")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def imports(root: Path, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for every import statement in the file, anywhere in it."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if f"{target}.{n}" in known]
            found += [(f"{target}.{n}", []) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                found.append((target, rest))
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (explicitly: a submodule, or the module named)."""
    mods = modules(root)
    known = set(mods)
    return {m: {t for t, _ in imports(root, p, known) if t in known and t != m} for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def ray_imports(root: Path) -> list[str]:
    """'module imports ray.x' for every Ray import outside the allowed subpackages."""
    mods = modules(root)
    bad = []
    for m, p in mods.items():
        sub = m.split(".")[1] if "." in m else ""
        if sub in RAY_ALLOWED:
            continue
        bad += [f"{m} imports {t}" for t, _ in imports(root, p, set(mods)) if t == "ray" or t.startswith("ray.")]
    return bad


def private_imports(root: Path) -> list[str]:
    """'module imports X._name' for every private name (or private module) taken from elsewhere."""
    mods = modules(root)
    bad = []
    for m, p in mods.items():
        for target, names in imports(root, p, set(mods)):
            if target == m or target == "__future__":
                continue
            private_parts = [part for part in target.split(".") if part.startswith("_") and not part.startswith("__")]
            bad += [f"{m} imports {target}" for _ in private_parts[:1]]
            bad += [f"{m} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    return bad


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_finds_a_function_level_cycle(tmp_path):
    pkg = write(tmp_path, {"__init__.py": "", "a.py": "from . import b\n",
                           "b.py": "def f():\n    from .a import g\n", "c.py": "from .a import x\n"})
    assert cycles(graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_the_checker_finds_ray_outside_the_edge(tmp_path):
    pkg = write(tmp_path, {"__init__.py": "", "launch/__init__.py": "import ray\n",
                           "train/__init__.py": "", "train/t.py": "def f():\n    from ray import tune\n"})
    assert ray_imports(pkg) == ["pkg.train.t imports ray"]


def test_the_checker_finds_private_names(tmp_path):
    pkg = write(tmp_path, {"__init__.py": "", "a.py": "_x = 1\n",
                           "b.py": "from .a import _x\nfrom torch.utils import _pytree\nimport os._private\n"})
    assert sorted(private_imports(pkg)) == ["pkg.b imports os._private", "pkg.b imports pkg.a._x",
                                            "pkg.b imports torch.utils._pytree"]


def test_the_package_has_no_import_cycles():
    assert cycles(graph(PACKAGE)) == []


def test_only_launch_bench_and_envs_import_ray():
    assert ray_imports(PACKAGE) == []


def test_no_module_imports_a_private_name_of_another():
    assert private_imports(PACKAGE) == []


@pytest.mark.parametrize("part", ["economy", "train", "structural", "launch", "bench", "envs", "policies",
                                  "results"])
def test_the_layout_has_its_subpackages(part):
    assert (PACKAGE / part / "__init__.py").exists()
