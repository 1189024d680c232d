"""Deformation sources in line-of-sight phase and the heavy-tailed laws of their strengths.

No closed form exists for the statistics of fields holding random sources; the generator estimates
them by Monte Carlo with standard errors (``datasets/insar_synthetic.py``, ``ground_truth.json``).
"""
from __future__ import annotations

import math

import numpy as np

MAGNITUDE_LAWS = ("loguniform", "pareto")


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


def draw_magnitudes(rng: np.random.Generator, size: int, low: float, high: float, distribution: str,
                    pareto_index: float) -> np.ndarray:
    """Source strengths (size,) float64 on [low, high] (|volume| in m^3, slip in m) from a stated law.

    loguniform: log v uniform on [log low, log high]. pareto: the power law truncated to [low, high],
    P(V > v) proportional to v^-alpha - high^-alpha (alpha = ``pareto_index``; alpha <= 2 gives an
    infinite variance before truncation), drawn by inverting the CDF
    F(v) = (1 - (low / v)^alpha) / (1 - (low / high)^alpha).
    """
    if distribution == "loguniform":
        return np.exp(rng.uniform(np.log(low), np.log(high), size))
    if distribution == "pareto":
        u = rng.random(size)
        return low * (1.0 - u * (1.0 - (low / high) ** pareto_index)) ** (-1.0 / pareto_index)
    raise ValueError(f"magnitude law={distribution!r}; expected one of {MAGNITUDE_LAWS}")


def _okada_terms(xi: np.ndarray, eta: np.ndarray, q: np.ndarray, dip: np.ndarray, nu: float) -> tuple:
    """Chinnery terms of Okada (1985) eqs. 25-30 at one corner: (strike-slip, dip-slip, tensile), each
    (ux, uy, uz) in Okada's axes without the factor U / (2 pi); xi, eta, q in metres, dip in radians
    (all broadcast together)."""
    sd, cd = np.sin(dip), np.cos(dip)
    vertical = np.abs(cd) < 1e-6
    cd = np.where(vertical, 1.0, cd)  # the vertical case uses eq. 29 below
    m = 1.0 - 2.0 * nu  # mu / (lambda + mu)
    r = np.sqrt(xi ** 2 + eta ** 2 + q ** 2)
    y_t, d_t = eta * cd + q * sd, eta * sd - q * cd
    y_t, d_t = np.where(vertical, q * sd, y_t), np.where(vertical, eta * sd, d_t)
    x = np.sqrt(xi ** 2 + q ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_eta = np.where(r + eta > 0, r + eta, np.finfo(float).tiny)
        ln_r_eta = np.log(r_eta)
        theta = np.where(q != 0, np.arctan(xi * eta / (q * r)), 0.0)
        i5 = np.where(xi != 0, m * 2.0 / cd * np.arctan((eta * (x + q * cd) + x * (r + x) * sd)
                                                        / (xi * (r + x) * cd)), 0.0)
        i4 = m / cd * (np.log(r + d_t) - sd * ln_r_eta)
        i3 = m * (y_t / (cd * (r + d_t)) - ln_r_eta) + sd / cd * i4
        i1 = m * (-xi / (cd * (r + d_t))) - sd / cd * i5
        i1 = np.where(vertical, -m / 2.0 * xi * q / (r + d_t) ** 2, i1)
        i3 = np.where(vertical, m / 2.0 * (eta / (r + d_t) + y_t * q / (r + d_t) ** 2 - ln_r_eta), i3)
        i4 = np.where(vertical, -m * q / (r + d_t), i4)
        i5 = np.where(vertical, -m * xi * sd / (r + d_t), i5)
        i2 = m * (-ln_r_eta) - i3
        cd = np.where(vertical, 0.0, cd)
        a_eta = np.where(r + eta > 0, 1.0 / (r * r_eta), 0.0)
        a_xi = 1.0 / (r * (r + xi))
        strike = (-(xi * q * a_eta + theta + i1 * sd), -(y_t * q * a_eta + q * cd / r_eta + i2 * sd),
                  -(d_t * q * a_eta + q * sd / r_eta + i4 * sd))
        dipslip = (-(q / r - i3 * sd * cd), -(y_t * q * a_xi + cd * theta - i1 * sd * cd),
                   -(d_t * q * a_xi + sd * theta - i5 * sd * cd))
        tensile = (q ** 2 * a_eta - i3 * sd ** 2, -d_t * q * a_xi - sd * (xi * q * a_eta - theta) - i1 * sd ** 2,
                   y_t * q * a_xi + cd * (xi * q * a_eta - theta) - i5 * sd ** 2)
    return strike, dipslip, tensile


def okada_surface_displacement(east: np.ndarray, north: np.ndarray, *, depth: np.ndarray, length: np.ndarray,
                               width: np.ndarray, strike_deg: np.ndarray, dip_deg: np.ndarray,
                               slip: tuple[np.ndarray, np.ndarray, np.ndarray], poisson_ratio: float) -> np.ndarray:
    """Surface displacement (3, ...) (east, north, up) in metres of a rectangular dislocation (Okada 1985).

    Okada's geometry: the fault's lower edge starts at the origin, at ``depth`` (m, >= width sin(dip)), and runs
    ``length`` (m) along ``strike_deg`` (clockwise from north); the plane rises ``width`` (m) up-dip towards the
    left of the strike direction. east/north: observation points (m) relative to that origin. slip:
    (strike-slip, dip-slip, opening) in metres (left-lateral, reverse and opening positive). All arguments
    broadcast together. Chinnery's notation f(x, p) - f(x, p - W) - f(x - L, p) + f(x - L, p - W) (eq. 24).
    """
    dip, phi = np.radians(dip_deg), np.radians(strike_deg)
    x = east * np.sin(phi) + north * np.cos(phi)  # Okada axes: x along strike, y to its left
    y = -east * np.cos(phi) + north * np.sin(phi)
    p = y * np.cos(dip) + depth * np.sin(dip)
    q = y * np.sin(dip) - depth * np.cos(dip)
    ux = uy = uz = 0.0
    for xi, eta, sign in ((x, p, 1.0), (x, p - width, -1.0), (x - length, p, -1.0), (x - length, p - width, 1.0)):
        for (tx, ty, tz), amount in zip(_okada_terms(xi, eta, q, dip, poisson_ratio), slip):
            f = sign * np.asarray(amount) / (2.0 * math.pi)
            ux, uy, uz = ux + f * tx, uy + f * ty, uz + f * tz
    return np.stack(np.broadcast_arrays(ux * np.sin(phi) - uy * np.cos(phi), ux * np.cos(phi) + uy * np.sin(phi), uz))


def okada_los_phase(n: int, params: np.ndarray, *, poisson_ratio: float, pixel_size_m: float, wavelength_m: float,
                    incidence_deg: float, look_azimuth_deg: float) -> np.ndarray:
    """Phase (count, n, n) float32 in radians of rectangular faults (Okada 1985), one per field.

    params (count, 9): x0_px, y0_px (surface projection of the fault centre; column = east, row = south),
    top_depth_px, length_px, width_px, strike_deg, dip_deg, rake_deg, slip_m. The slip vector is
    slip (cos rake, sin rake) in the fault plane (no opening); LOS projection as in ``mogi_los_phase``.
    """
    x0, y0, top, length, width, strike, dip, rake, slip = (params[:, j, None, None] * 1.0 for j in range(9))
    phi, delta = np.radians(strike), np.radians(dip)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    # Okada's origin: from the centre, back half the length along strike and half the width's run along -y
    half_run = 0.5 * width * np.cos(delta)
    origin_e = x0 - 0.5 * length * np.sin(phi) + half_run * np.cos(phi)
    origin_n = -y0 - 0.5 * length * np.cos(phi) - half_run * np.sin(phi)
    u = okada_surface_displacement((cols[None] - origin_e) * pixel_size_m, (-rows[None] - origin_n) * pixel_size_m,
                                   depth=(top + width * np.sin(delta)) * pixel_size_m, length=length * pixel_size_m,
                                   width=width * pixel_size_m, strike_deg=strike, dip_deg=dip,
                                   slip=(slip * np.cos(np.radians(rake)), slip * np.sin(np.radians(rake)), 0.0),
                                   poisson_ratio=poisson_ratio)
    th, az = math.radians(incidence_deg), math.radians(look_azimuth_deg)
    u_los = u[0] * math.sin(th) * math.sin(az) + u[1] * math.sin(th) * math.cos(az) + u[2] * math.cos(th)
    return (-4.0 * math.pi / wavelength_m * u_los).astype(np.float32)
