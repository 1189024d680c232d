"""Reference errors of diffusers' schedulers on the exact-ODE oracles of `bench/oracles.py`.

Needs diffusers, which the project does not depend on: run it in its own environment, e.g.

    python3 -m venv /tmp/diffusers-venv
    /tmp/diffusers-venv/bin/pip install diffusers torch==2.14.1 numpy scipy tqdm
    /tmp/diffusers-venv/bin/python bench/oracle_reference_diffusers.py --out_json reference.json

It prints the REFERENCE table that `bench/sampler_oracle.py` stores (nothing imports this file; the
tests do not run it). Set-up as bench/README.md: T = 1000, `linear` / `cosine` betas of the
original code, x_T = randn(1024, 1, 2, 2) float64 from seed 0 at index T-1, float64 throughout,
`trained_betas`, `timestep_spacing="trailing"`, no clipping (DDIM with `set_alpha_to_one=True`;
DPM-Solver++ multistep of order 2 and 3 with the scheduler's defaults). rms error against the exact
ODE end point.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.oracles import ORACLES, eps_prediction, exact_x0  # noqa: E402
from improved_diffusion.gaussian_diffusion import get_named_beta_schedule  # noqa: E402

T, NFES = 1000, (5, 10, 20, 50)


def reference_errors(oracle: str, schedule: str, nfe: int, x_T: torch.Tensor) -> tuple[float, float, float]:
    """rms errors (DDIM, DPM-Solver++(2M), DPM-Solver++(3M)) of diffusers with `nfe` steps."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    betas = get_named_beta_schedule(schedule, T)
    alphas_cumprod = torch.tensor(np.cumprod(1 - betas), dtype=torch.float64)
    schedulers = (
        DDIMScheduler(num_train_timesteps=T, trained_betas=betas, set_alpha_to_one=True, clip_sample=False,
                      timestep_spacing="trailing"),
        DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=betas, algorithm_type="dpmsolver++",
                                    solver_order=2, timestep_spacing="trailing"),
        DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=betas, algorithm_type="dpmsolver++",
                                    solver_order=3, timestep_spacing="trailing"),
    )
    errors = []
    for scheduler in schedulers:
        scheduler.set_timesteps(nfe)
        start = int(scheduler.timesteps[0])
        x = x_T.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(eps_prediction(oracle, x, alphas_cumprod[int(t)]), t, x).prev_sample
        exact = exact_x0(oracle, x_T, float(alphas_cumprod[start]))
        errors.append(float((x - exact).pow(2).mean().sqrt()))
    return tuple(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_json", default="", help="also write the rows here")
    args = parser.parse_args()
    import diffusers

    torch.set_default_dtype(torch.float64)
    x_T = torch.randn(1024, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = []
    print(f"# rms error of diffusers {diffusers.__version__} (bench/oracle_reference_diffusers.py): "
          "DDIM, DPM++(2M), DPM++(3M)")
    for oracle in ORACLES:
        for schedule in ("linear", "cosine"):
            for nfe in NFES:
                errors = reference_errors(oracle, schedule, nfe, x_T)
                rows.append(dict(oracle=oracle, schedule=schedule, nfe=nfe, ddim=errors[0], dpmpp_2m=errors[1],
                                 dpmpp_3m=errors[2]))
                print(f'("{oracle}", "{schedule}", {nfe}): (' + ", ".join(f"{e:.3e}" for e in errors) + "),")
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(dict(diffusers=diffusers.__version__, rows=rows), indent=1))


if __name__ == "__main__":
    main()
