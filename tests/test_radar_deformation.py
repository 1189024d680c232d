"""Okada (1985) rectangular dislocation against published check values and independent limits; generator use."""
import math

import h5py
import numpy as np

from datasets import insar_synthetic
from utils.radar.deformation import okada_los_phase, okada_surface_displacement

NU = 0.25


def _okada_axes(x, y, **kw):
    """Displacement in Okada's axes (ux along strike, uy to its left, uz up) for a north-striking fault."""
    e, n, u = okada_surface_displacement(-np.asarray(y, float), np.asarray(x, float), strike_deg=0.0,
                                         poisson_ratio=NU, **kw)
    return n, -e, u


def test_okada_1992_check_values():
    """Okada (1992) Table 2, case 2 (x=2, y=3, z=0, d=4, dip=70, L=3, W=2, alpha=2/3): unit strike- and dip-slip."""
    kw = dict(depth=4.0, length=3.0, width=2.0, dip_deg=70.0)
    np.testing.assert_allclose(_okada_axes(2.0, 3.0, slip=(1.0, 0.0, 0.0), **kw), [-8.689e-3, -4.298e-3, -2.747e-3],
                               rtol=2e-3)
    np.testing.assert_allclose(_okada_axes(2.0, 3.0, slip=(0.0, 1.0, 0.0), **kw), [-4.682e-3, -3.527e-2, -3.564e-2],
                               rtol=2e-3)


def test_long_vertical_strike_slip_fault_is_the_screw_dislocation():
    """Fault from the surface to depth D, very long: u_along = (U / pi) atan(D / y) (Savage & Burford 1973)."""
    depth, y = 1000.0, np.array([200.0, 1000.0, 3000.0])
    ux, uy, uz = _okada_axes(1e6, -y, depth=depth, length=2e6, width=depth, dip_deg=90.0, slip=(1.0, 0.0, 0.0))
    np.testing.assert_allclose(np.abs(ux), np.arctan(depth / y) / math.pi, rtol=1e-4)
    np.testing.assert_allclose(uz, 0.0, atol=1e-9)


def test_small_faults_match_the_point_source_formulas():
    """Okada (1985) point sources (eqs. 25-28 with the I^0 terms) for a 2 m patch at 1 km depth, dip 70."""
    dip, a, d = math.radians(70.0), 2.0, 1000.0
    sd, cd, m = math.sin(dip), math.cos(dip), 1 - 2 * NU
    x, y = np.array([300.0, -500.0, 800.0]), np.array([200.0, 400.0, -600.0])  # from the patch centre
    dc = d - a / 2 * sd
    r = np.sqrt(x ** 2 + y ** 2 + dc ** 2)
    p, q = y * cd + dc * sd, y * sd - dc * cd
    i2 = m * x * (1 / (r * (r + dc) ** 2) - y ** 2 * (3 * r + dc) / (r ** 3 * (r + dc) ** 3))
    i1 = m * y * (1 / (r * (r + dc) ** 2) - x ** 2 * (3 * r + dc) / (r ** 3 * (r + dc) ** 3))
    i3 = m * x / r ** 3 - i2
    i5 = m * (1 / (r * (r + dc)) - x ** 2 * (2 * r + dc) / (r ** 3 * (r + dc) ** 2))
    scale = a * a / (2 * math.pi)
    expected = {(0.0, 0.0, 1.0): [3 * x * q ** 2 / r ** 5 - i3 * sd ** 2, 3 * y * q ** 2 / r ** 5 - i1 * sd ** 2,
                                  3 * dc * q ** 2 / r ** 5 - i5 * sd ** 2],
                (0.0, 1.0, 0.0): [-(3 * x * p * q / r ** 5 - i3 * sd * cd), -(3 * y * p * q / r ** 5 - i1 * sd * cd),
                                  -(3 * dc * p * q / r ** 5 - i5 * sd * cd)]}
    for slip, ref in expected.items():
        got = _okada_axes(x + a / 2, y + a / 2 * cd, depth=d, length=a, width=a, dip_deg=70.0, slip=slip)
        np.testing.assert_allclose(got, scale * np.array(ref), rtol=1e-4)


def test_los_phase_of_a_centred_vertical_strike_slip_fault_is_odd():
    """Looking straight down, a vertical strike-slip fault's uplift changes sign across the fault and its normal."""
    n = 33
    params = np.array([[16.0, 16.0, 1.0, 8.0, 4.0, 0.0, 90.0, 0.0, 0.05]])
    phase = okada_los_phase(n, params, poisson_ratio=NU, pixel_size_m=100.0, wavelength_m=0.0555, incidence_deg=0.0,
                            look_azimuth_deg=0.0)[0].astype(np.float64)
    assert np.abs(phase).max() > 0.1
    np.testing.assert_allclose(phase, -phase[:, ::-1], atol=1e-5 * np.abs(phase).max())
    np.testing.assert_allclose(phase, -phase[::-1, :], atol=1e-5 * np.abs(phase).max())


def test_generator_with_okada_faults(tmp_path):
    truth = insar_synthetic.main(out_dir=str(tmp_path), n_train=400, n_val=0, n_test=0, image_size=16,
                                 deformation_source="okada", deformation_fraction=0.5, okada_slip_m=(0.05, 0.5),
                                 deformation_law="pareto", deformation_pareto_index=1.0, atmo_sigma_rad=0.5,
                                 write_labels=True, truth_monte_carlo_fields=2000, seed=1)
    sources = np.load(tmp_path / "sources_train.npz")
    assert list(sources["columns"][3:]) == insar_synthetic.SOURCE_COLUMNS["okada"]
    with h5py.File(tmp_path / "train" / "train_000.hdf5", "r") as f:
        unwrap, label = f["unwrap"][()], f["label"][()]
    rows = sources["sources"]
    assert np.array_equal(rows[:, 2], label) and np.all(np.isfinite(rows[label == 1, 3:]))
    assert np.isfinite(unwrap).all()
    assert np.all((rows[label == 1, -1] >= 0.05) & (rows[label == 1, -1] <= 0.5))
    assert np.median(unwrap[label == 1].std(axis=(1, 2))) > 1.2 * np.median(unwrap[label == 0].std(axis=(1, 2)))
    mc = truth["components"]["deformation"]["monte_carlo"]
    assert truth["components"]["deformation"]["source"] == "okada" and mc["num_fields"] == 2000
    assert np.all(np.array(truth["semivariogram"]["gamma_mixture"][1:]) > np.array(truth["semivariogram"]["gamma_total"][1:]))
