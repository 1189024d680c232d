"""Deformation sources in line-of-sight phase and the heavy-tailed laws of their strengths.

No closed form exists for the statistics of fields holding random sources; the generator estimates
them by Monte Carlo with standard errors (``datasets/insar_synthetic.py``, ``ground_truth.json``).
"""
from __future__ import annotations

import math

import numpy as np

VOLUME_DISTRIBUTIONS = ("loguniform", "pareto")


def mogi_los_phase(n: int, x0: np.ndarray, y0: np.ndarray, depth: np.ndarray, volume: np.ndarray, *,
                   poisson_ratio: float, pixel_size_m: float, wavelength_m: float, incidence_deg: float,
                   look_azimuth_deg: float) -> np.ndarray:
    """Phase (count, n, n) float32 in radians of Mogi point sources (Mogi 1958; Segall 2010 eq. 7.14).

    u_z = (1 - nu) dV / pi * d / R^3, u_r = (1 - nu) dV / pi * r / R^3 (R^2 = r^2 + d^2), projected on
    the ground-to-satellite unit vector e = (sin th sin az, sin th cos az, cos th) (east, north, up);
    phase = -4 pi / wavelength * u_los. Positions/depths in pixels (column = east, row = south).
    """
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    east = (cols[None] - x0[:, None, None]) * pixel_size_m
    north = -(rows[None] - y0[:, None, None]) * pixel_size_m
    d = (depth * pixel_size_m)[:, None, None]
    c = ((1.0 - poisson_ratio) * volume / math.pi)[:, None, None] / (east ** 2 + north ** 2 + d ** 2) ** 1.5
    th, az = math.radians(incidence_deg), math.radians(look_azimuth_deg)
    u_los = c * (east * math.sin(th) * math.sin(az) + north * math.sin(th) * math.cos(az) + d * math.cos(th))
    return (-4.0 * math.pi / wavelength_m * u_los).astype(np.float32)


def draw_volumes(rng: np.random.Generator, size: int, low: float, high: float, distribution: str,
                 pareto_index: float) -> np.ndarray:
    """|dV| (size,) float64 in m^3 on [low, high] from a stated law.

    loguniform: log|dV| uniform on [log low, log high]. pareto: the power law truncated to [low, high],
    P(|dV| > v) proportional to v^-alpha - high^-alpha (alpha = ``pareto_index``; alpha <= 2 gives an
    infinite variance before truncation), drawn by inverting the CDF
    F(v) = (1 - (low / v)^alpha) / (1 - (low / high)^alpha).
    """
    if distribution == "loguniform":
        return np.exp(rng.uniform(np.log(low), np.log(high), size))
    if distribution == "pareto":
        u = rng.random(size)
        return low * (1.0 - u * (1.0 - (low / high) ** pareto_index)) ** (-1.0 / pareto_index)
    raise ValueError(f"volume distribution={distribution!r}; expected one of {VOLUME_DISTRIBUTIONS}")
