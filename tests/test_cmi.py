"""ridrepro.theory.cmi against hand-computed cases: independence gives ~0, a deterministic copy gives H(Y)."""

import numpy as np
import pytest

from ridrepro.theory.cmi import knn_cmi, local_permutation, local_permutation_null, plugin_cmi

N = 2000


def test_independent_variables_give_about_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, N)
    x, z = rng.standard_normal((N, 2)), rng.standard_normal((N, 2))
    assert abs(knn_cmi(x, y, z)) < 0.03
    assert abs(knn_cmi(x, y)) < 0.03


def test_deterministic_copy_gives_entropy_of_y():
    # Y = floor(X) for X uniform on [0, 4): I(X; Y) = H(Y) = ln 4; conditioning on independent noise
    # changes nothing
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 4, N)
    y = np.floor(x).astype(int)
    z = rng.standard_normal(N)
    assert knn_cmi(x, y) == pytest.approx(np.log(4), abs=0.05)
    # an extra (irrelevant) conditioning dimension costs the kNN estimate some downward bias at this N
    assert knn_cmi(x, y, z) == pytest.approx(np.log(4), abs=0.1)


def test_conditioning_on_the_source_removes_it():
    # X = Z + small noise with Y = floor(Z): X says nothing about Y beyond Z
    rng = np.random.default_rng(2)
    z = rng.uniform(0, 4, N)
    y = np.floor(z).astype(int)
    x = z + 0.01 * rng.standard_normal(N)
    assert knn_cmi(x, y) > 1.0
    assert abs(knn_cmi(x, y, z)) < 0.08


def test_gaussian_case_against_closed_form():
    # Y a fair bit, X | Y ~ N(+-mu, 1): I(X; Y) by quadrature, Z independent
    mu = 1.0
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4000)
    x = (2 * y - 1) * mu + rng.standard_normal(4000)
    grid = np.linspace(-10, 10, 20001)
    p1 = np.exp(-(grid - mu) ** 2 / 2) / np.sqrt(2 * np.pi)
    p0 = np.exp(-(grid + mu) ** 2 / 2) / np.sqrt(2 * np.pi)
    px = (p0 + p1) / 2
    exact = np.trapezoid(0.5 * p0 * np.log(p0 / px) + 0.5 * p1 * np.log(p1 / px), grid)
    assert knn_cmi(x, y, rng.standard_normal(4000)) == pytest.approx(exact, abs=0.04)


def test_local_permutation_keeps_cell_counts_and_null_is_near_zero():
    rng = np.random.default_rng(4)
    z = rng.uniform(0, 4, N)
    y = np.floor(z).astype(int)
    x = rng.standard_normal(N) + y  # X depends on Y only through Z's cell
    yp = local_permutation(y, z, cell_size=100, seed=0)
    assert sorted(yp) == sorted(y) and (yp != y).any()
    null = local_permutation_null(x, y, z, n_perm=5, seed=0)
    assert null.shape == (5,) and np.all(np.abs(null) < 0.05)


def test_plugin_cmi_hand_cases():
    a = np.array([0, 1, 0, 1])
    c = np.zeros(4, int)
    assert plugin_cmi(a, a, c) == pytest.approx(np.log(2))  # copy: H(A)
    assert plugin_cmi(a, np.array([0, 0, 1, 1]), c) == pytest.approx(0.0)  # independent
    assert plugin_cmi(a, a, a) == pytest.approx(0.0)  # conditioning on the copy


def test_bad_shapes():
    with pytest.raises(ValueError):
        knn_cmi(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError):
        knn_cmi(np.full((10, 1), np.nan), np.zeros(10))
