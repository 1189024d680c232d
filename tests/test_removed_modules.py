"""Importing a module of the original code that is gone points to its replacement and docs/migrating.md."""
import subprocess
import sys

import pytest

from improved_diffusion.removed_modules import GUIDE, REPLACEMENTS

from .conftest import REPO_ROOT


@pytest.mark.parametrize("name", ["improved_diffusion.fp16_util", "utils.utils", "feature_extraction.utils_feature_extraction"])
def test_original_import_names_its_replacement(name):
    code = f"import improved_diffusion\nimport {name}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    first_missing = "feature_extraction" if name.startswith("feature_extraction") else name  # the package goes first
    assert last.startswith(f"ModuleNotFoundError: No module named '{first_missing}'") and GUIDE in last


def test_existing_modules_are_not_shadowed_and_every_name_is_in_the_guide(repo_root):
    import improved_diffusion.acceleration  # noqa: F401  (a real module still imports)
    guide = (repo_root / "docs" / "migrating.md").read_text()
    for name in REPLACEMENTS:
        assert name.replace(".", "/") in guide, name
