"""Few-step sampling of data beyond +-1: the exact-ODE oracles of `bench/oracles.py` with their data multiplied
by 1, 2 and 4, driven through `Denoiser` and DPM-Solver++(3M) (the path of `sample_DPM.sample_from_ODE`).

Per scale, schedule and number of network evaluations: the rms error to the exact ODE end point divided by
the scale (so rows compare across scales) for the default half-log-SNR range of the grid ("auto",
`noise_schedule.lambda_range`), the same range shifted by -log(scale) (data of std k reach a given
signal-to-noise ratio at lambda lower by log k), and the whole chain (lambda_min = lambda_max = None).

    python bench/sampler_scale.py [--out_json scale.json]
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.oracles import exact_x0  # noqa: E402
from bench.sampler_oracle import OracleNet  # noqa: E402
from improved_diffusion.denoiser import Denoiser  # noqa: E402
from improved_diffusion.noise_schedule import REFERENCE_DATA_STD, DiscreteSchedule, lambda_range  # noqa: E402
from improved_diffusion.sampler_choice import ode_sampler  # noqa: E402
from improved_diffusion.script_util import create_gaussian_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

T = 1000


def ranges(nfe: int, scale: float) -> dict:
    """{label: (lambda_min, lambda_max)} of the compared grids for `nfe` evaluations and data scale `scale`."""
    # "shifted": the library's range for data of std scale x the oracles' (what sampling now uses by default)
    return {"auto": ("auto", "auto"), "shifted": lambda_range(nfe, REFERENCE_DATA_STD * scale), "full": (None, None)}


def main(out_json: str = "",  # also write the rows here (JSON)
         scales: list = (1.0, 2.0, 4.0),  # data multipliers of the oracles
         nfes: list = (5, 10, 20),  # network evaluations per sample
         oracles: list = ("gmm", "gaussian")) -> list[dict]:  # oracles of bench/oracles.py
    """Print and return rms error / scale of each lambda range per oracle, schedule, scale and NFE (x_T seed 0)."""
    torch.set_default_dtype(torch.float64)
    x_T = torch.randn(1024, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = []
    for oracle in oracles:
        for schedule_name in ("cosine", "linear"):
            diffusion = create_gaussian_diffusion(steps=T, noise_schedule=schedule_name, rescale_timesteps=True)
            schedule = DiscreteSchedule(diffusion.alphas_cumprod)
            for scale in map(float, scales):
                denoiser = Denoiser(OracleNet(oracle, schedule, scale), diffusion, clip_denoised=False)
                x0_exact = exact_x0(oracle, x_T, float(diffusion.alphas_cumprod[T - 1]), scale=scale)
                for nfe in map(int, nfes):
                    row = {"oracle": oracle, "schedule": schedule_name, "scale": scale, "nfe": nfe}
                    for label, (lo, hi) in ranges(nfe, scale).items():
                        x0 = ode_sampler(nfe, lambda_min=lo, lambda_max=hi)(denoiser, x_T, None)
                        row[label] = float((x0 - x0_exact).pow(2).mean().sqrt()) / scale
                    rows.append(row)
                    print(f"{oracle:8s} {schedule_name:6s} scale {scale:3g} NFE {nfe:3d}  "
                          + "  ".join(f"{k} {row[k]:.3e}" for k in ("auto", "shifted", "full")), flush=True)
    if out_json:
        Path(out_json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    run_cli(main)
