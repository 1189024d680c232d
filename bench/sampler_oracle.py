"""Accuracy of the deterministic samplers on the analytic Gaussian oracle (bench/README.md#sampler-oracle).

Data x0 ~ N(MU, S^2) per pixel, so the exact noise prediction and the exact probability-flow ODE map
are known in closed form. The oracle is wrapped as a *network* (it receives what `diffusion.model_time`
gives, like a UNet) and driven through `Denoiser` and `dpm_solver_sample`, the code path of
`sample_DPM.sample_from_ODE`; DDIM runs on the trailing grid as `sample.py` does. Everything in float64.

    python bench/sampler_oracle.py [--out_json oracle.json]
"""
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from improved_diffusion.denoiser import Denoiser  # noqa: E402
from improved_diffusion.noise_schedule import DiscreteSchedule  # noqa: E402
from improved_diffusion.sampler_choice import chain_sampler, ode_sampler  # noqa: E402
from improved_diffusion.script_util import create_gaussian_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

MU, S, T = 0.3, 0.5, 1000
# rms error of diffusers 0.42.1 on the same problem (bench/README.md#sampler-oracle): DDIM, DPM++(2M), DPM++(3M)
REFERENCE = {
    ("linear", 5): (2.37e-1, 2.28e-1, 2.27e-1), ("linear", 10): (1.30e-1, 9.49e-2, 9.05e-2),
    ("linear", 20): (6.84e-2, 2.17e-2, 2.00e-2), ("linear", 50): (2.85e-2, 5.41e-4, 5.71e-3),
    ("cosine", 5): (1.38e-1, 1.06e-1, 1.04e-1), ("cosine", 10): (7.29e-2, 2.44e-2, 2.02e-2),
    ("cosine", 20): (3.78e-2, 1.45e-3, 7.89e-3), ("cosine", 50): (1.55e-2, 7.18e-4, 2.24e-3),
}
# (label, keywords of dpm_solver_sample); the first is sample_from_ODE's default.
CONFIGS = [
    ("++3M-logSNR", dict(algorithm_type="dpmsolver++", method_type="multistep", order=3, skip_type="logSNR")),
    ("++2M-logSNR", dict(algorithm_type="dpmsolver++", method_type="multistep", order=2, skip_type="logSNR")),
    ("++3M-time", dict(algorithm_type="dpmsolver++", method_type="multistep", order=3, skip_type="time-uniform")),
    ("3M-logSNR", dict(algorithm_type="dpmsolver", method_type="multistep", order=3, skip_type="logSNR")),
    ("++3S-logSNR", dict(algorithm_type="dpmsolver++", method_type="singlestep", order=3, skip_type="logSNR")),
    ("3S-logSNR", dict(algorithm_type="dpmsolver", method_type="singlestep", order=3, skip_type="logSNR")),
    ("++3M-nofloor", dict(algorithm_type="dpmsolver++", method_type="multistep", order=3, skip_type="logSNR",
                          lambda_min=None)),
]


class GaussianOracleNet(torch.nn.Module):
    """The exact noise prediction for N(MU, S^2) data: eps = sqrt(1-ab) (x - sqrt(ab) MU) / (ab S^2 + 1 - ab),
    ab taken at the fractional index model_time * T / 1000 of `schedule` (a rescaled-time network)."""

    def __init__(self, schedule: DiscreteSchedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.dtype_probe = torch.nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        ab = self.schedule.alpha_bar(time.double() * (self.schedule.num_timesteps / 1000)).reshape(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * S * S + 1 - ab)


def main(out_json: str = "", nfes: list = (5, 10, 20, 50)) -> dict:
    """Print and return the rms error of each sampler at each NFE on both schedules (x_T from seed 0)."""
    torch.set_default_dtype(torch.float64)
    x_T = torch.randn(1024, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results, verdicts = [], []
    for schedule_name in ("linear", "cosine"):
        diffusion = create_gaussian_diffusion(steps=T, noise_schedule=schedule_name, rescale_timesteps=True)
        denoiser = Denoiser(GaussianOracleNet(DiscreteSchedule(diffusion.alphas_cumprod)), diffusion,
                            clip_denoised=False)
        ab_T = float(diffusion.alphas_cumprod[T - 1])
        x0_exact = MU + S * (x_T - math.sqrt(ab_T) * MU) / math.sqrt(ab_T * S * S + 1 - ab_T)
        for nfe in nfes:
            row = {"schedule": schedule_name, "nfe": int(nfe)}
            runs = [("ddim", chain_sampler(True, sampling_steps=int(nfe)))]
            runs += [(label, ode_sampler(int(nfe), **kw)) for label, kw in CONFIGS]
            for label, sample_batch in runs:
                denoiser.nfe = 0
                row[label] = float((sample_batch(denoiser, x_T, None) - x0_exact).pow(2).mean().sqrt())
                if denoiser.nfe != nfe:
                    raise RuntimeError(f"{label} made {denoiser.nfe} network calls instead of {nfe}")
            results.append(row)
            ref = REFERENCE.get((schedule_name, int(nfe)))
            best = min((v, k) for k, v in row.items() if k not in ("schedule", "nfe", "ddim"))
            line = f"{schedule_name:6s} NFE {nfe:3d}  DDIM {row['ddim']:.3e}"
            if ref:
                ratio = best[0] / min(ref[1:])
                row.update(reference_ddim=ref[0], reference_best_dpm=min(ref[1:]), best=best[1], best_ratio=ratio)
                line += (f" (ref {ref[0]:.2e})  best DPM {best[0]:.2e} [{best[1]}]"
                         f" / ref best {min(ref[1:]):.2e} = {ratio:.2f}")
                if nfe in (10, 20):
                    verdicts.append(ratio <= 0.5 and abs(row["ddim"] - ref[0]) <= 0.006 * ref[0])
            print(line)
            print("        " + "  ".join(f"{k}={v:.2e}" for k, v in row.items() if k in dict(CONFIGS)))
    print("targets (NFE 10, 20: best DPM <= 0.5 x reference best, DDIM = reference DDIM):",
          "met" if verdicts and all(verdicts) else "NOT met")
    if out_json:
        Path(out_json).write_text(json.dumps(results, indent=1))
    return {"rows": results}


if __name__ == "__main__":
    run_cli(main)
