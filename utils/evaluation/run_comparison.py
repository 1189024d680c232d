"""Compare training runs: the `metadata.json` keys that differ, the final logged metrics, and the loss curves of
every run in one figure (read from the tensorboard event files of each run folder).

Command line: `python -m utils.compare_runs --runs models_data/a,models_data/b --out_png results/runs.png`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from improved_diffusion.file_io import check_free

# metadata.json keys that are bookkeeping, or the run folder itself (each column is named after it): not compared
NOT_SETTINGS = ("code_version", "resumes", "url_folder_experiment")
# scalars shown as final metrics, when a run logged them (tensorboard tags of improved_diffusion.train_logging)
FINAL_TAGS = ("loss", "mse", "vb", "grad_norm", "val/bits_per_dim", "samples_per_s")


@dataclass
class Run:
    """One run folder: its metadata and its tensorboard scalars, tag -> (steps (K,) int64, values (K,) float64)."""
    folder: Path
    metadata: dict
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def name(self) -> str:
        return self.folder.name


def read_scalars(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the tensorboard event files in `folder`, by tag, sorted by step; a step written twice (a
    resumed run re-logging a step) keeps its last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        try:
            accumulator.Reload()
        except Exception as err:  # noqa: BLE001 - tensorboard raises its own types for a damaged file
            raise ValueError(f"{path}: not a readable tensorboard event file ({type(err).__name__}: {err})") from None
        for tag in accumulator.Tags().get("scalars", []):
            found.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return {tag: (np.array(sorted(v), dtype=np.int64), np.array([v[s] for s in sorted(v)], dtype=np.float64))
            for tag, v in found.items()}


def read_run(folder: str | Path) -> Run:
    """A run folder written by `train.py` (metadata.json + tensorboard events); one-line errors naming the folder."""
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"runs: {folder} has no metadata.json; expected a run folder written by train.py")
    try:
        metadata = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"runs: {meta_path} is not valid JSON ({err})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"runs: {meta_path} holds a {type(metadata).__name__}; expected a JSON object")
    return Run(folder, metadata, read_scalars(folder))


def differing_settings(runs: list[Run]) -> dict[str, list]:
    """{key: [value in each run]} for every metadata key whose value is not the same in all runs (a key one run
    lacks shows as None there)."""
    keys = sorted({k for run in runs for k in run.metadata if k not in NOT_SETTINGS})
    table = {key: [run.metadata.get(key) for run in runs] for key in keys}
    return {key: values for key, values in table.items() if any(v != values[0] for v in values[1:])}


def final_metrics(run: Run) -> dict[str, float]:
    """The last logged value of each tag of FINAL_TAGS the run has, plus `step`: the last step logged."""
    out = {tag: float(run.scalars[tag][1][-1]) for tag in FINAL_TAGS if tag in run.scalars}
    steps = [int(s[-1]) for s, _ in run.scalars.values() if len(s)]
    out["step"] = max(steps) if steps else 0
    return out


def format_comparison(runs: list[Run]) -> str:
    """The printed table: settings that differ, then the final metrics, one column per run."""
    width = max(12, *(len(run.name) for run in runs))
    header = f"{'':<24s}" + "".join(f"{run.name:>{width + 2}s}" for run in runs)
    lines = [header, "settings that differ" + ("" if differing_settings(runs) else ": none")]
    for key, values in differing_settings(runs).items():
        lines.append(f"  {key:<22s}" + "".join(f"{_tail(json.dumps(v), width):>{width + 2}s}" for v in values))
    lines.append("final metrics (last logged value)")
    finals = [final_metrics(run) for run in runs]
    for tag in ("step",) + FINAL_TAGS:
        if any(tag in f for f in finals):
            lines.append(f"  {tag:<22s}" + "".join(f"{_number(f.get(tag)):>{width + 2}s}" for f in finals))
    return "\n".join(lines)


def _tail(text: str, width: int) -> str:
    """`text`, or its last characters after an ellipsis when longer than `width` (paths differ at the end)."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _number(value: float | None) -> str:
    return "-" if value is None else format(value, ".4g")


def plot_loss_curves(runs: list[Run], path: str | Path, tag: str = "loss") -> Path:
    """One figure: `tag` against the optimizer step for every run that logged it (log y axis), titled with the
    number of runs; returns the PNG path."""
    from utils.evaluation.plots import plt, save_figure
    fig, ax = plt.subplots(figsize=(7, 4.2))
    plotted = 0
    for run in runs:
        if tag in run.scalars:
            steps, values = run.scalars[tag]
            ax.plot(steps, values, label=f"{run.name} (last {values[-1]:.4g} at step {steps[-1]})")
            plotted += 1
    if not plotted:
        plt.close(fig)
        raise ValueError(f"runs: no run logged the scalar {tag!r}; expected tensorboard events from train.py")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"{tag} (training objective, model units)")
    ax.set_title(f"{tag} of {plotted} run(s), as logged every log_interval steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


def compare_runs(runs: list[str],  # run folders written by train.py (comma-separated on the command line)
                 out_png: str | None = None,  # figure of the loss curves of every run (None: no figure)
                 tag: str = "loss",  # tensorboard scalar drawn in the figure (e.g. loss, mse, val/bits_per_dim)
                 overwrite: bool = False,  # replace an existing out_png
                 ) -> dict:
    """Compare two or more training runs: print the settings that differ and the final metrics, draw the curves.

    Returns {"runs": [folder, ...], "differing": {key: [values]}, "final": [{tag: value}, ...], "figure": path}."""
    if not isinstance(runs, (list, tuple)) or len(runs) < 2:
        raise ValueError(f"runs: got {runs!r}; expected two or more run folders (comma-separated)")
    if out_png is not None:
        check_free([out_png], overwrite, key="out_png")
    loaded = [read_run(folder) for folder in runs]
    print(format_comparison(loaded))
    figure = None if out_png is None else str(plot_loss_curves(loaded, out_png, tag))
    if figure:
        print(f"[compare] {tag} curves of {len(loaded)} runs in {figure}")
    return {"runs": [str(r.folder) for r in loaded], "differing": differing_settings(loaded),
            "final": [final_metrics(r) for r in loaded], "figure": figure}
