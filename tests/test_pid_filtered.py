"""ridrepro.pid.filtered: Red_f on hand-computed tables, and red_intersection <= Red_f <= Red."""

import numpy as np
import pytest

from ridrepro.pid import broja_pid, red_intersection
from ridrepro.pid.filtered import red_filtered_brute_force, set_partitions
from ridrepro.pid.gates import gates


def test_set_partitions_are_the_bell_numbers():
    assert [sum(1 for _ in set_partitions(n)) for n in range(1, 6)] == [1, 2, 5, 15, 52]


def test_gates():
    g = gates()
    assert red_filtered_brute_force(g["RDN"][0]).value == pytest.approx(1.0)  # T = S = Y
    assert red_filtered_brute_force(g["XOR"][0]).value == pytest.approx(0.0, abs=1e-12)  # I(Y;T) = 0
    assert red_filtered_brute_force(g["UNQ"][0]).value == pytest.approx(0.0, abs=1e-12)  # S knows nothing


def shared_noisy_code(rng, ny=3, na=2, nn=2):
    """T = (A, N1), S = (A, N2) with A a noisy (dense) channel of Y and N1, N2 independent noise."""
    py = rng.dirichlet(np.ones(ny))
    pa = rng.dirichlet(np.ones(na), size=ny)  # P(a | y), dense
    pn1, pn2 = rng.dirichlet(np.ones(nn)), rng.dirichlet(np.ones(nn))
    P = np.zeros((na * nn, na * nn, ny))
    for y in range(ny):
        for a in range(na):
            P[a * nn:(a + 1) * nn, a * nn:(a + 1) * nn, y] = py[y] * pa[y, a] * np.outer(pn1, pn2)
    return P, py, pa


def test_filters_can_exceed_the_unfiltered_intersection():
    rng = np.random.default_rng(0)
    P, py, pa = shared_noisy_code(rng)
    i_ya = np.sum(py[:, None] * pa * np.log2(pa / (py @ pa)[None, :]))
    assert red_intersection(P).value == pytest.approx(0.0, abs=1e-12)  # dense P(a|y) links every label
    r = red_filtered_brute_force(P)
    assert r.value >= i_ya - 1e-9 > 0.01
    assert r.value <= broja_pid(P).red + 1e-9


def test_ordering_on_random_structured_tables():
    rng = np.random.default_rng(1)
    for _ in range(20):
        P, _, _ = shared_noisy_code(rng, ny=int(rng.integers(2, 4)))
        P = P + 0.02 * rng.random(P.shape) * (rng.random(P.shape) < 0.2)  # some leakage
        P /= P.sum()
        lo, mid, hi = red_intersection(P).value, red_filtered_brute_force(P).value, broja_pid(P).red
        assert lo <= mid + 1e-9 and mid <= hi + 1e-9


def test_too_many_values():
    with pytest.raises(ValueError):
        red_filtered_brute_force(np.ones((7, 2, 2)) / 28)
