"""docs/bring_your_own_data.md: every command's flags are keywords of the entry function it runs."""
import importlib
import inspect
import re
from pathlib import Path

ENTRIES = {"train.py": ("train", "main"), "sample_DPM.py": ("sample_DPM", "sample_from_ODE"),
           "utils_FID.py": ("utils_FID", "main"), "example_fine_tuning.py": ("example_fine_tuning", "main"),
           "model_likelihood.py": ("model_likelihood", "calc_model_loss"),
           "datasets/tile_interferograms.py": ("datasets.tile_interferograms", "main"),
           "utils.report": ("utils.evaluation.report", "evaluate_samples"),
           "utils.sampling.georef": ("utils.sampling.georef", "export_geotiff")}


def _commands(text):
    """(entry, flags) of each `python ...` command in the page's code blocks (continuation lines joined)."""
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            match = re.match(r"python (?:-m )?(\S+)(.*)", command.strip())
            if match:
                yield match.group(1), re.findall(r"--([a-z_0-9-]+)", match.group(2))


def test_every_flag_of_the_page_exists(repo_root):
    commands = list(_commands((Path(repo_root) / "docs" / "bring_your_own_data.md").read_text()))
    assert len(commands) >= 10
    for entry, flags in commands:
        module, name = ENTRIES[entry]
        keywords = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        unknown = [f for f in flags if f.removeprefix("no-") not in keywords]
        assert not unknown, f"{entry}: {unknown}"
