"""Accuracy of the deterministic samplers on the exact-ODE oracles of `bench/oracles.py`.

Per-pixel data whose denoiser is known in closed form: the Gaussian of bench/README.md#sampler-oracle and a
two-component Gaussian mixture (exact ODE end point integrated numerically). Each oracle is wrapped as
a *network* (it receives what `diffusion.model_time` gives, like a UNet) and driven through `Denoiser`
and `dpm_solver_sample`, the code path of `sample_DPM.sample_from_ODE`; DDIM runs on the trailing grid
as `sample.py` does. Everything in float64. The reference errors of diffusers come from
`bench/oracle_reference_diffusers.py` (run once in its own environment).

Accuracy goal of the default configuration: rms error / best reference (DPM-Solver++ 2M or 3M) <= 0.5
at 5 NFE and <= 0.1 at 10 and 20 NFE, on both oracles and schedules.

    python bench/sampler_oracle.py [--out_json oracle.json]
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.oracles import ORACLES, eps_prediction, exact_x0  # noqa: E402
from improved_diffusion.denoiser import Denoiser  # noqa: E402
from improved_diffusion.noise_schedule import DiscreteSchedule  # noqa: E402
from improved_diffusion.sampler_choice import chain_sampler, ode_sampler  # noqa: E402
from improved_diffusion.script_util import create_gaussian_diffusion  # noqa: E402
from utils.cli import run_cli  # noqa: E402

T = 1000
# rms error of diffusers 0.42.1 (bench/oracle_reference_diffusers.py; the Gaussian rows equal
# bench/README.md#sampler-oracle): DDIM, DPM-Solver++(2M), DPM-Solver++(3M)
REFERENCE = {
    ("gaussian", "linear", 5): (2.366e-01, 2.279e-01, 2.271e-01),
    ("gaussian", "linear", 10): (1.296e-01, 9.491e-02, 9.049e-02),
    ("gaussian", "linear", 20): (6.840e-02, 2.172e-02, 1.996e-02),
    ("gaussian", "linear", 50): (2.850e-02, 5.412e-04, 5.713e-03),
    ("gaussian", "cosine", 5): (1.377e-01, 1.059e-01, 1.041e-01),
    ("gaussian", "cosine", 10): (7.291e-02, 2.436e-02, 2.018e-02),
    ("gaussian", "cosine", 20): (3.776e-02, 1.446e-03, 7.886e-03),
    ("gaussian", "cosine", 50): (1.549e-02, 7.182e-04, 2.238e-03),
    ("gmm", "linear", 5): (2.352e-01, 2.284e-01, 2.278e-01),
    ("gmm", "linear", 10): (1.152e-01, 9.167e-02, 8.905e-02),
    ("gmm", "linear", 20): (5.684e-02, 3.043e-02, 3.375e-02),
    ("gmm", "linear", 50): (2.365e-02, 1.255e-02, 1.064e-02),
    ("gmm", "cosine", 5): (1.204e-01, 9.800e-02, 9.696e-02),
    ("gmm", "cosine", 10): (5.961e-02, 3.066e-02, 3.061e-02),
    ("gmm", "cosine", 20): (3.070e-02, 1.596e-02, 1.567e-02),
    ("gmm", "cosine", 50): (1.270e-02, 3.532e-03, 2.884e-03),
}
GOAL = {5: 0.5, 10: 0.1, 20: 0.1}  # default error / best reference DPM-Solver++ error, at most
# (label, keywords of dpm_solver_sample); the first is sample_from_ODE's default.
CONFIGS = [
    ("default", dict()),
    ("++3M-lam-3", dict(lambda_min=-3.0, lambda_max=None)),
    ("++2M", dict(order=2)),
    ("++3M-time", dict(skip_type="time-uniform")),
    ("++3M-quad", dict(skip_type="time-quadratic")),
    ("3M", dict(algorithm_type="dpmsolver")),
    ("++3S", dict(method_type="singlestep")),
    ("3S", dict(algorithm_type="dpmsolver", method_type="singlestep")),
    ("++3M-full", dict(lambda_min=None, lambda_max=None)),
]


class OracleNet(torch.nn.Module):
    """The exact noise prediction of `oracle` data (multiplied by `scale`) at the fractional index
    model_time * T / 1000 of `schedule` (a rescaled-time network): x (N, C, H, W) float64 -> eps of the same shape."""

    def __init__(self, oracle: str, schedule: DiscreteSchedule, scale: float = 1.0) -> None:
        super().__init__()
        self.oracle, self.schedule, self.scale = oracle, schedule, scale
        self.dtype_probe = torch.nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        ab = self.schedule.alpha_bar(time.double() * (self.schedule.num_timesteps / 1000)).reshape(-1, 1, 1, 1)
        return eps_prediction(self.oracle, x, ab, self.scale)


def main(out_json: str = "", nfes: list = (5, 10, 20, 50)) -> dict:
    """Print and return the rms error of each sampler at each NFE on both oracles and schedules (x_T from seed 0)."""
    torch.set_default_dtype(torch.float64)
    x_T = torch.randn(1024, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results, verdicts = [], []
    for oracle in ORACLES:
        for schedule_name in ("linear", "cosine"):
            diffusion = create_gaussian_diffusion(steps=T, noise_schedule=schedule_name, rescale_timesteps=True)
            denoiser = Denoiser(OracleNet(oracle, DiscreteSchedule(diffusion.alphas_cumprod)), diffusion,
                                clip_denoised=False)
            x0_exact = exact_x0(oracle, x_T, float(diffusion.alphas_cumprod[T - 1]))
            for nfe in nfes:
                row = {"oracle": oracle, "schedule": schedule_name, "nfe": int(nfe)}
                runs = [("ddim", chain_sampler(True, sampling_steps=int(nfe)))]
                runs += [(label, ode_sampler(int(nfe), **kw)) for label, kw in CONFIGS]
                for label, sample_batch in runs:
                    denoiser.nfe = 0
                    row[label] = float((sample_batch(denoiser, x_T, None) - x0_exact).pow(2).mean().sqrt())
                    if denoiser.nfe != nfe:
                        raise RuntimeError(f"{label} made {denoiser.nfe} network calls instead of {nfe}")
                results.append(row)
                line = f"{oracle:8s} {schedule_name:6s} NFE {nfe:3d}  DDIM {row['ddim']:.3e}"
                ref = REFERENCE.get((oracle, schedule_name, int(nfe)))
                if ref:
                    ratio = row["default"] / min(ref[1:])
                    row.update(reference_ddim=ref[0], reference_best_dpm=min(ref[1:]), default_ratio=ratio)
                    line += (f" (ref {ref[0]:.2e})  default {row['default']:.2e} / ref best {min(ref[1:]):.2e}"
                             f" = {ratio:.3f}")
                    if nfe in GOAL:
                        verdicts.append(ratio <= GOAL[nfe] and abs(row["ddim"] - ref[0]) <= 0.006 * ref[0])
                        line += "" if verdicts[-1] else f"  (goal {GOAL[nfe]} NOT met)"
                print(line)
                print("        " + "  ".join(f"{k}={v:.2e}" for k, v in row.items() if k in dict(CONFIGS)))
    print(f"goal (default / reference best DPM-Solver++ <= {GOAL}, DDIM = reference DDIM):",
          "met" if verdicts and all(verdicts) else "NOT met")
    if out_json:
        Path(out_json).write_text(json.dumps(results, indent=1))
    return {"rows": results}


if __name__ == "__main__":
    run_cli(main)
