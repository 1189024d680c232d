"""How well a per-field score (e.g. bits/dim) separates two groups of fields: ROC AUC with a bootstrap interval."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _scores(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"{name}: got {values.size} values (finite: {int(np.isfinite(values).sum())}); "
                         "expected at least one, all finite")
    return values


def roc_auc(positive, negative) -> float:
    """Area under the ROC curve of the rule 'score > threshold -> positive' = P(S+ > S-) + P(S+ = S-) / 2,
    computed from mid-ranks as the Mann-Whitney statistic U / (n+ n-), U = R+ - n+ (n+ + 1) / 2 (R+ the rank
    sum of the positives in the pooled sample). positive (n+,), negative (n-,) finite scores."""
    pos, neg = _scores(positive, "positive"), _scores(negative, "negative")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def roc_auc_interval(positive, negative, level: float = 0.95, num_bootstrap: int = 2000, seed: int = 0
                     ) -> dict:
    """ROC AUC and its percentile bootstrap interval (each group resampled with replacement, `num_bootstrap`
    times, seeded): {"auc", "low", "high", "level", "num_bootstrap", "n_positive", "n_negative"}."""
    if not 0 < level < 1 or num_bootstrap < 1:
        raise ValueError(f"level={level}, num_bootstrap={num_bootstrap}; expected 0 < level < 1 and >= 1 draws")
    pos, neg = _scores(positive, "positive"), _scores(negative, "negative")
    rng = np.random.default_rng(seed)
    draws = [roc_auc(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(num_bootstrap)]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"auc": roc_auc(pos, neg), "low": float(low), "high": float(high), "level": level,
            "num_bootstrap": num_bootstrap, "n_positive": int(pos.size), "n_negative": int(neg.size)}
