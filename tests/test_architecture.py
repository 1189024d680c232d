"""The library never imports a script: no module under improved_diffusion/ or utils/ imports a top-level
script (train, sample, sample_DPM, model_likelihood, utils_FID, main_job, example_*) or datasets/.

Scripts may import the library, never the reverse (docs/architecture.md, "Layering").
"""
from __future__ import annotations

import ast
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
