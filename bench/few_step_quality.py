"""Few-step sampling quality on the built-in synthetic InSAR data: which sampler to use by default.

For a checkpoint trained on `datasets/insar_synthetic.py` data (e.g. by `main_job.py --data_preset gaussian`),
sample with DDIM and DPM-Solver++(3M) at 10/20/50 network evaluations and with 1000-step ancestral sampling (the
reference), then report per sampler: the worst relative error of the semivariogram against the
analytic one (lags 2 px .. H/2) and, in the standardised features of the contrastive domain
extractor (trained on the training fields, `bench/feature_metrics.py`), FID with its interval, KID
+- SE, precision / recall against the real test fields, the FID against half of the test set next
to the noise floor (the other half) at the same counts, and the FID against the ancestral samples.

    python bench/few_step_quality.py --model_path models_data/demo_insar/ema_rate=0.99_6.pt
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sample  # noqa: E402
import sample_DPM  # noqa: E402
from bench.feature_metrics import train_domain_extractor  # noqa: E402
from improved_diffusion.checkpoint import read_metadata  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.evaluation.array_io import load_image_set  # noqa: E402
from utils.evaluation.demo_figures import analytic_semivariogram, physical_samples  # noqa: E402
from utils.evaluation.feature_scores import feature_scores, noise_floor  # noqa: E402
from utils.evaluation.features import load_extractor  # noqa: E402
from utils.evaluation.semivariogram import empirical_semivariogram  # noqa: E402
from utils.radar.ground_truth import GROUND_TRUTH_NAME, read_ground_truth  # noqa: E402


def semivariogram_error(fields: np.ndarray, truth: dict, min_lag: float = 2.0) -> float:
    """Worst |gamma_empirical / gamma_analytic - 1| over lags in [min_lag, H/2]."""
    sv = empirical_semivariogram(fields, progress=False)
    keep = sv.mean_distance >= min_lag
    return float(np.abs(sv.gamma[keep] / analytic_semivariogram(sv.mean_distance[keep], truth) - 1).max())


def main(model_path: str = "models_data/demo_insar/ema_rate=0.99_6.pt",  # EMA checkpoint of the demo run
         data_dir: str = "data/insar_synthetic",  # the synthetic data the model was trained on
         out_dir: str = "results/few_step_quality",  # samples, extractor and the result JSON
         num_samples: int = 512,  # samples per sampler
         nfe: str = "10,20,50",  # network evaluations of the few-step samplers
         reference_steps: int = 1000,  # ancestral steps of the reference (the full training chain)
         batch_size: int = 256,  # samples per network call
         seed: int = 0):  # seed of every sampler (same initial noise for the deterministic ones)
    """Print a table of semivariogram error and FID per sampler, and one JSON line."""
    out, data = Path(out_dir), Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = read_ground_truth(data / GROUND_TRUTH_NAME)
    metadata_json = Path(model_path).parent / "metadata.json"
    norm = read_metadata(metadata_json)["data_normalization"]
    extractor = load_extractor("domain_cnn", train_domain_extractor(out / "extractor", data, metadata_json, seed))
    real = load_image_set(data / "test", key_data="unwrap", data_normalization=norm).images

    runs = {f"ancestral-{reference_steps}": lambda p: sample.main_sample(
        model_path=model_path, num_samples=num_samples, batch_size=batch_size, url_save_path=p, plot=False,
        seed=seed, sampling_steps=reference_steps, progress=False, overwrite=True)}
    for n in (int(v) for v in nfe.split(",")):
        runs[f"ddim-{n}"] = lambda p, n=n: sample.main_sample(
            model_path=model_path, num_samples=num_samples, batch_size=batch_size, url_save_path=p, plot=False,
            seed=seed, use_ddim=True, sampling_steps=n, progress=False, overwrite=True)
        runs[f"dpm++3m-{n}"] = lambda p, n=n: sample_DPM.sample_from_ODE(
            model_path=model_path, num_samples=num_samples, batch_size=batch_size, url_save_path=p, plot=False,
            seed=seed, sample_steps=n, progress=False, overwrite=True)
    results, features = {}, {}
    real_features = extractor.extract(real, batch_size=256, device="cpu", progress=False)
    for name, run in runs.items():
        start = time.perf_counter()
        npz = run(str(out / name))
        seconds = time.perf_counter() - start
        images = np.load(npz)["arr_0"]
        features[name] = extractor.extract(images, batch_size=256, device="cpu", progress=False)
        scores = feature_scores(real_features, features[name], num_bootstrap=100, seed=seed)
        matched = noise_floor(real_features, features[name], num_bootstrap=0, seed=seed)
        results[name] = {"seconds": round(seconds, 1),
                         "semivariogram_max_rel_error": semivariogram_error(physical_samples(npz, norm), truth),
                         "fid_vs_real": scores["fid"]["fid"],
                         "fid_vs_real_ci": [scores["fid"]["ci_low"], scores["fid"]["ci_high"]],
                         "kid_vs_real": scores["kid"]["kid"], "kid_vs_real_se": scores["kid"]["se"],
                         "precision": scores["precision_recall"]["precision"],
                         "recall": scores["precision_recall"]["recall"],
                         "fid_vs_real_half": matched["real_vs_generated"]["fid"]["fid"],
                         "kid_vs_real_half": matched["real_vs_generated"]["kid"]["kid"],
                         "n_matched": matched["n_compared"]}
    noise, kid_noise = matched["real_vs_real"]["fid"]["fid"], matched["real_vs_real"]["kid"]["kid"]
    reference = f"ancestral-{reference_steps}"
    for name in results:
        results[name]["fid_vs_reference"] = feature_scores(features[reference], features[name], scores=("fid",),
                                                           num_bootstrap=0)["fid"]["fid"]
    print(f"{'sampler':18s} {'seconds':>8s} {'semivariogram err':>18s} {'FID vs real [95% interval]':>30s} "
          f"{'KID vs real':>18s} {'P':>6s} {'R':>6s} {'FID vs half':>11s} {'KID vs half':>11s} "
          f"{'FID vs ref':>11s}")
    for name, r in results.items():
        print(f"{name:18s} {r['seconds']:8.1f} {100 * r['semivariogram_max_rel_error']:17.1f}% "
              f"{r['fid_vs_real']:9.4g} [{r['fid_vs_real_ci'][0]:8.4g}, {r['fid_vs_real_ci'][1]:8.4g}] "
              f"{r['kid_vs_real']:9.3g} +- {r['kid_vs_real_se']:5.2g} {r['precision']:6.3f} {r['recall']:6.3f} "
              f"{r['fid_vs_real_half']:11.4g} {r['kid_vs_real_half']:11.3g} {r['fid_vs_reference']:11.4g}")
    print(f"Two halves of the real test set at the same counts ({matched['n_reference']} vs "
          f"{matched['n_compared']}; the noise floor of 'vs half'): FID {noise:.4g}, KID {kid_noise:.3g}; "
          f"extractor sha256 {extractor.digest[:12]}")
    result = {"bench": "few_step_quality", "model_path": model_path, "num_samples": num_samples,
              "real_half_split_fid": noise, "real_half_split_kid": kid_noise, "extractor": extractor.description(),
              "samplers": results}
    (out / "few_step_quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_cli(main)
