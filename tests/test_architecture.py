"""The library never imports a script: no module under improved_diffusion/ or utils/ imports a top-level
script (train, sample, sample_DPM, model_likelihood, utils_FID, main_job, example_*) or datasets/.

Scripts may import the library, never the reverse (docs/architecture.md, "Layering").
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_PACKAGES = ("improved_diffusion", "utils")
SCRIPT_MODULES = frozenset({"train", "sample", "sample_DPM", "model_likelihood", "utils_FID", "main_job", "datasets"})
SCRIPT_PREFIXES = ("example_",)
# Library modules allowed to import a script, with the script they import: none.
ALLOWED_SCRIPT_IMPORTS: dict[str, frozenset[str]] = {}


def is_script(module: str) -> bool:
    """True when the absolute dotted name `module` is a top-level script or a part of datasets/."""
    top = module.split(".")[0]
    return top in SCRIPT_MODULES or top.startswith(SCRIPT_PREFIXES)


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`: statements anywhere in the file and
    `importlib.import_module` / `__import__` calls with a literal name; relative imports are skipped."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def script_imports(root: Path) -> list[str]:
    """'path:line imports module' for each script import in the library packages under `root`."""
    offences = []
    for package in LIBRARY_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, module in imported_modules(path.read_text(encoding="utf-8")):
                if is_script(module) and module.split(".")[0] not in ALLOWED_SCRIPT_IMPORTS.get(rel, ()):
                    offences.append(f"{rel}:{line} imports {module}")
    return offences


def test_scan_finds_script_imports_and_ignores_library_names(tmp_path):
    (tmp_path / "utils").mkdir()
    (tmp_path / "improved_diffusion" / "sub").mkdir(parents=True)
    (tmp_path / "utils" / "a.py").write_text(
        "import sample_DPM\nfrom datasets.insar_synthetic import covariance\n"
        "def f():\n    import example_train\n    return importlib.import_module('main_job')\n")
    (tmp_path / "improved_diffusion" / "sub" / "b.py").write_text(
        "from . import sample\nfrom .samplers import x\nimport samplers\nfrom utils.sampling import sample_io\n"
        "import trainer\nfrom improved_diffusion import train_util\n")
    assert script_imports(tmp_path) == [
        "utils/a.py:1 imports sample_DPM", "utils/a.py:2 imports datasets.insar_synthetic",
        "utils/a.py:4 imports example_train", "utils/a.py:5 imports main_job"]


def test_library_never_imports_a_script():
    offences = script_imports(ROOT)
    assert not offences, "library modules import scripts (move the shared code into the library):\n" + "\n".join(
        offences)


# Modules that load the network code; an evaluation or data helper should not need them.
MODEL_MODULES = frozenset({"improved_diffusion.unet", "improved_diffusion.gaussian_diffusion",
                           "improved_diffusion.script_util", "improved_diffusion.checkpoint"})
# Leaf modules: they import nothing of the project.
LEAVES = ("improved_diffusion/file_io.py", "improved_diffusion/diffusion_types.py", "utils/radar/ground_truth.py")


def loaded_after_import(module: str) -> set[str]:
    """Names in sys.modules of a fresh interpreter (run in the repository root) after `import module`."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    return set(out.stdout.split())


def test_scorecard_import_loads_no_model_code():
    loaded = loaded_after_import("utils.evaluation.scorecard")
    assert "utils.evaluation.scorecard" in loaded and "improved_diffusion.file_io" in loaded
    assert not loaded & MODEL_MODULES, sorted(loaded & MODEL_MODULES)


def test_the_import_probe_sees_model_code_when_it_is_loaded():
    assert MODEL_MODULES <= loaded_after_import("improved_diffusion.checkpoint")


def project_imports(root: Path, rel: str) -> set[str]:
    """Dotted names of the project modules or packages that the file `rel` under `root` imports (relative imports
    resolved, imports inside functions included)."""
    package = ".".join(rel.split("/")[:-1])  # the package holding the file (for an __init__.py: its own)
    found = set()
    for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    modules = {p.relative_to(root).as_posix().removesuffix(".py").removesuffix("/__init__").replace("/", ".")
               for package in LIBRARY_PACKAGES for p in (root / package).rglob("*.py")}
    return found & modules


def import_cycles(root: Path) -> list[list[str]]:
    """Each import circle among the library modules under `root`, as the list of its modules (depth-first)."""
    files = {p.relative_to(root).as_posix() for package in LIBRARY_PACKAGES for p in (root / package).rglob("*.py")}
    name = {rel: rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for rel in files}
    graph = {name[rel]: project_imports(root, rel) - {name[rel]} for rel in sorted(files)}
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [module] if target in path else [target, module])
            elif target not in state:
                visit(target, path + [module])
        state[module] = "done"
    for module in graph:
        if module not in state:
            visit(module, [])
    return cycles


def test_cycle_scan_finds_a_circle_hidden_in_a_function(tmp_path):
    (tmp_path / "improved_diffusion").mkdir()
    (tmp_path / "utils").mkdir()
    (tmp_path / "improved_diffusion" / "a.py").write_text("from .b import f\n")
    (tmp_path / "improved_diffusion" / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "improved_diffusion" / "c.py").write_text("from improved_diffusion import a\n")
    assert import_cycles(tmp_path) == [["improved_diffusion.a", "improved_diffusion.b"]]


def test_library_has_no_import_cycles():
    assert import_cycles(ROOT) == []


def test_leaf_modules_import_nothing_of_the_project():
    for rel in LEAVES:
        assert project_imports(ROOT, rel) == set(), rel
    assert project_imports(ROOT, "improved_diffusion/denoiser.py") >= {"improved_diffusion.diffusion_types"}
