"""Each shared concept has one home: a scan of the tree's source (ast) for the helpers' definitions and
for hand-written copies of what they do."""
import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

# helper -> the module that must define it (and no other module may)
HOMES = {
    "CheckpointName": "improved_diffusion/checkpoint.py",  # checkpoint file and set names
    "check_free": "improved_diffusion/file_io.py",  # "exists and not overwrite"
    "file_sha256": "improved_diffusion/file_io.py",
    "code_version": "improved_diffusion/file_io.py",
    "derive_seed": "improved_diffusion/file_io.py",  # per-epoch / per-batch seeds
    "check_image_sizes": "improved_diffusion/script_util.py",  # image_size_hr / image_size_lr
    "apply_preset": "improved_diffusion/script_util.py",
}


def _sources() -> dict[str, ast.Module]:
    skip = {".venv", "tests", "node_modules"}
    out = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if any(part in skip or part.startswith(".") for part in rel.parts):
            continue
        out[rel.as_posix()] = ast.parse(path.read_text(), filename=str(rel))
    return out


def _functions(tree: ast.Module):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def test_each_helper_is_defined_once_in_its_home():
    found: dict[str, list[str]] = {name: [] for name in HOMES}
    for rel, tree in _sources().items():
        for node in _functions(tree):
            if node.name in found:
                found[node.name].append(rel)
    assert found == {name: [home] for name, home in HOMES.items()}


def _is_exists_and_not_overwrite(node: ast.AST) -> bool:
    """`<x>.exists() and not overwrite` (any order, any further operands)."""
    if not (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)):
        return False
    exists = any(isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "exists"
                 for v in node.values)
    not_overwrite = any(isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not) and isinstance(v.operand, ast.Name)
                        and v.operand.id == "overwrite" for v in node.values)
    return exists and not_overwrite


def _owner_copies(predicate) -> list[str]:
    """'module:function' of every function holding a node that satisfies `predicate`."""
    hits = []
    for rel, tree in _sources().items():
        for func in _functions(tree):
            if not isinstance(func, ast.ClassDef) and any(predicate(n) for n in ast.walk(func)):
                hits.append(f"{rel}:{func.name}")
    return sorted(set(hits))


def test_no_copied_overwrite_check():
    assert _owner_copies(_is_exists_and_not_overwrite) == ["improved_diffusion/file_io.py:check_free"]


def test_no_copied_seed_derivation_or_git_version():
    def seed_sequence(n):
        return isinstance(n, ast.Attribute) and n.attr == "SeedSequence"

    def rev_parse(n):
        return isinstance(n, ast.Constant) and n.value == "rev-parse"

    assert _owner_copies(seed_sequence) == ["improved_diffusion/file_io.py:derive_seed"]
    assert _owner_copies(rev_parse) == ["improved_diffusion/file_io.py:code_version"]


def test_file_hashing_lives_in_file_sha256():
    def hashes_a_file(func):
        calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
                 for n in ast.walk(func) if isinstance(n, ast.Call)}
        return {"sha256", "open"} <= calls

    hits = [f"{rel}:{f.name}" for rel, tree in _sources().items() for f in _functions(tree)
            if isinstance(f, ast.FunctionDef) and hashes_a_file(f)]
    assert hits == ["improved_diffusion/file_io.py:file_sha256"]


def test_scan_sees_the_whole_tree():
    # the scan would pass vacuously if it read nothing: it must see the library, utils and the scripts
    rels = set(_sources())
    assert {"improved_diffusion/checkpoint.py", "utils/sampling/run.py", "train.py", "main_job.py"} <= rels
    assert Path(REPO_ROOT / "improved_diffusion").is_dir()


def test_normalisation_kinds_are_listed_once():
    def lists_kinds(node):
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else []
        return {"minmax", "robust"} <= {e.value for e in items if isinstance(e, ast.Constant)}

    hits = sorted({rel for rel, tree in _sources().items() if any(lists_kinds(n) for n in ast.walk(tree))})
    assert hits == ["improved_diffusion/data_normalization.py"]
