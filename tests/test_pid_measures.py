"""Shannon measures on explicit joints: exact values, units, and input validation."""

import math

import numpy as np
import pytest

from ridrepro.pid import conditional_entropy, conditional_mutual_information, entropy, mutual_information
from ridrepro.pid.gates import gates, h2


def test_entropy_exact_values():
    assert entropy(np.full(8, 1 / 8)) == pytest.approx(3.0, abs=1e-15)
    assert entropy([0.2, 0.8]) == pytest.approx(h2(0.2), abs=1e-15)
    assert entropy([1.0, 0.0, 0.0]) == 0.0  # 0 log 0 = 0
    assert entropy(np.full(4, 0.25), unit="nats") == pytest.approx(math.log(4), abs=1e-15)


def test_marginal_and_joint_entropies_of_a_gate():
    P, _ = gates()["AND"]
    assert entropy(P, axes=(0,)) == pytest.approx(1.0)
    assert entropy(P, axes=(0, 1)) == pytest.approx(2.0)
    assert entropy(P, axes=2) == pytest.approx(h2(0.25))
    assert entropy(P) == pytest.approx(2.0)  # y is a function of (t, s)


def test_mutual_information_exact_values():
    P, _ = gates()["XOR"]
    assert mutual_information(P, 2, 0) == pytest.approx(0.0, abs=1e-15)
    assert mutual_information(P, 2, (0, 1)) == pytest.approx(1.0, abs=1e-15)
    assert conditional_mutual_information(P, 2, 0, 1) == pytest.approx(1.0, abs=1e-15)
    P, _ = gates()["AND"]
    # I(Y;T) = H(Y) - H(Y|T) = h(1/4) - 1/2
    assert mutual_information(P, 2, 0) == pytest.approx(h2(0.25) - 0.5, abs=1e-15)
    assert conditional_entropy(P, 2, 0) == pytest.approx(0.5, abs=1e-15)


def test_chain_rule_on_random_joints():
    rng = np.random.default_rng(0)
    for _ in range(20):
        P = rng.dirichlet(np.ones(60) * 0.5).reshape(3, 4, 5)
        lhs = mutual_information(P, 2, (0, 1))
        rhs = mutual_information(P, 2, 1) + conditional_mutual_information(P, 2, 0, 1)
        assert lhs == pytest.approx(rhs, abs=1e-13)
        assert mutual_information(P, 0, 2, unit="nats") == pytest.approx(
            mutual_information(P, 0, 2) * math.log(2), abs=1e-14)


@pytest.mark.parametrize("bad, message", [
    (np.array([0.5, -0.1, 0.6]), "negative"),
    (np.array([0.5, np.nan, 0.5]), "non-finite"),
    (np.array([0.5, np.inf]), "non-finite"),
    (np.zeros((2, 0, 2)), "empty alphabet"),
    (np.array([0.3, 0.3]), "sums to"),
    (np.array(["a", "b"]), "numeric"),
    (np.float64(1.0), "at least one axis"),
])
def test_invalid_tables_are_rejected_with_a_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        entropy(bad)


def test_counts_need_explicit_normalisation():
    counts = np.array([[1, 3], [2, 2]])
    with pytest.raises(ValueError, match="normalize"):
        mutual_information(counts)
    assert mutual_information(counts, normalize=True) == pytest.approx(
        mutual_information(counts / counts.sum()), abs=1e-15)
    with pytest.raises(ValueError, match="all-zero"):
        entropy(np.zeros(3), normalize=True)


def test_unknown_unit_and_axis_are_rejected():
    with pytest.raises(ValueError, match="unit"):
        entropy([0.5, 0.5], unit="dits")
    with pytest.raises(ValueError, match="axis"):
        mutual_information(np.full((2, 2), 0.25), 0, 5)
