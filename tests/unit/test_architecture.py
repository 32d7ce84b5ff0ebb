"""The package's shape, read from its source: one namespace, layers that only import downwards, no import loops.

Every module of the installed namespace is parsed (pyproject.toml maps each sdcl.* package onto a repository folder)
and every import statement is read, at module level and inside functions alike. The layers, bottom first:
resources and files < reference < {registry, checkpoint} < opencl_impl < conformance < perf < the CLI (sdcl).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest



ROOT = Path(__file__).resolve().parents[2]
MAPPING = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

# package -> layer; a module may import its own package, and packages of lower layers only
LAYER = {"sdcl.resources": 0, "sdcl.files": 0, "sdcl.errors": 0, "sdcl.reference": 1, "sdcl.registry": 2, "sdcl.checkpoint": 2,
         "sdcl.opencl_impl": 3, "sdcl.conformance": 4, "sdcl.perf": 5, "sdcl": 6}
# third-party packages that only the test-and-oracle layers may import (the runtime must work without them)
TEST_ONLY = {"hypothesis": {"sdcl.conformance"}, "torch": {"sdcl.conformance", "sdcl.perf"},
             "diffusers": {"sdcl.conformance", "sdcl.perf"}, "transformers": {"sdcl.conformance", "sdcl.perf"},
             "pytest": {"sdcl.perf", "sdcl.conformance"}}   # conformance: its pytest plugin (pytest --sdcl)


def _modules() -> dict:
    """module name -> source file, for every .py of the namespace (the benchmark suite is data, not modules)."""
    out = {}
    for pkg, folder in MAPPING.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> list:
    """(imported module name, line) of every import statement, resolved to sdcl modules where they are one."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub if sub in MODULES else node.module, node.lineno))
    return out


def _package(module: str) -> str:
    """The layered package a module belongs to (sdcl.opencl_impl.variants.gemm -> sdcl.opencl_impl)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in LAYER else "sdcl"


def test_every_package_is_under_the_sdcl_namespace():
    assert set(MAPPING) and all(p == "sdcl" or p.startswith("sdcl.") for p in MAPPING)
    # the repository folders the issue keeps, each mapped into the namespace
    for folder in ("reference", "opencl_impl", "kernels", "conformance", "perf"):
        assert folder in MAPPING.values(), folder
    # kernels and tuning tables are data: no Python package named `kernels` to shadow another distribution's
    assert not (ROOT / "kernels" / "__init__.py").exists() and not (ROOT / "tuning" / "__init__.py").exists()


def test_no_module_imports_a_top_level_name_of_ours():
    """Inside the package every import of our code goes through sdcl.* (top-level reference, perf, conformance ...
    are not installed)."""
    ours = {"reference", "registry", "checkpoint", "opencl_impl", "conformance", "perf", "kernels", "tuning"}
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {name}" for m in MODULES for name, line in
           _imports(MODULES[m]) if name.split(".")[0] in ours]
    assert not bad, "\n".join(bad)


def test_layers_only_import_downwards():
    bad = []
    for m, path in MODULES.items():
        own = _package(m)
        for name, line in _imports(path):
            if not name.startswith("sdcl"):
                continue
            other = _package(name)
            if other != own and LAYER[other] >= LAYER[own]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {own} (layer {LAYER[own]}) imports {name} "
                           f"(layer {LAYER[other]})")
    assert not bad, "\n".join(bad)


def test_test_dependencies_stay_out_of_the_runtime():
    bad = []
    for m, path in MODULES.items():
        for name, line in _imports(path):
            allowed = TEST_ONLY.get(name.split(".")[0])
            if allowed is not None and _package(m) not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_files_import_each_other_in_a_loop():
    graph = {m: {n for n, _ in _imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    index, low, stack, on, loops, counter = {}, {}, [], set(), [], [0]

    def visit(v):                      # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, "modules importing each other in a loop: " + "; ".join(" <-> ".join(c) for c in loops)


def test_every_declared_launcher_resolves_and_every_op_has_its_public_function():
    from sdcl.opencl_impl import ops
    from sdcl.opencl_impl.dispatch import launcher
    from sdcl.registry import REGISTRY

    assert set(ops.OPS) == set(REGISTRY)
    for spec in REGISTRY.values():
        for v in spec.variants:
            assert callable(launcher(spec, v)), (spec.name, v.name)
