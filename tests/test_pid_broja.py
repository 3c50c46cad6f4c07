"""BROJA solver: exact values, agreement with the cvxpy reference, certificate, Theorem 3.2/4.1."""

import json
import math

import numpy as np
import pytest

from ridrepro.pid import broja_pid, broja_pid_batch, entropy, mutual_information, red_intersection
from ridrepro.pid.gates import gates
from ridrepro.pid.intersection import intersection_brute_force

ATOMS = ("red", "uni_t", "uni_s", "syn")
LN2 = math.log(2)


def random_tables(n, seed, max_shape=(6, 6, 5)):
    """Dirichlet tables of random shape: dense, peaked (alpha 0.1) and sparse (60% zeros)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(2, np.array(max_shape) + 1))
        P = rng.dirichlet(np.full(int(np.prod(shape)), [1.0, 0.1, 1.0][i % 3])).reshape(shape)
        if i % 3 == 2:
            P[rng.random(shape) < 0.6] = 0
            if P.sum() == 0:
                P.flat[0] = 1
            P /= P.sum()
        out.append(P)
    return out


@pytest.mark.parametrize("name", sorted(gates()))
def test_exact_values_from_the_reference(name):
    P, exact = gates()[name]
    r = broja_pid(P)
    for atom, value in exact.items():
        assert getattr(r, atom) == pytest.approx(value, abs=1e-9), atom
    assert r.gap <= 1e-10
    assert r.red + r.uni_t + r.uni_s + r.syn == pytest.approx(mutual_information(P, 2, (0, 1)), abs=1e-12)


def test_exact_values_with_the_cvxpy_reference():
    pytest.importorskip("cvxpy")
    for name, (P, exact) in gates().items():
        r = broja_pid(P, solver="cvxpy")
        for atom, value in exact.items():
            assert getattr(r, atom) == pytest.approx(value, abs=1e-7), (name, atom)


def test_agrees_with_cvxpy_on_200_random_tables_and_the_certificate_brackets_it():
    pytest.importorskip("cvxpy")
    tables = random_tables(196, seed=1) + random_tables(2, seed=2, max_shape=(10, 10, 10)) \
        + random_tables(2, seed=3, max_shape=(20, 20, 10))
    worst = 0.0
    for P in tables:
        a, b = broja_pid(P), broja_pid(P, solver="cvxpy")
        diff = max(abs(getattr(a, k) - getattr(b, k)) for k in ATOMS)
        worst = max(worst, diff)
        assert diff <= 1e-6
        assert a.gap <= 1e-9
        # The certificate brackets J* = I(Y;T,S) - Syn in [J - gap, J]; Clarabel's optimum (within its
        # 1e-12 tolerances, and never below J* unless infeasible) must land inside, up to 1e-7 bits.
        j_ip, j_cvx = a.i_yts - a.syn, b.i_yts - b.syn
        assert j_ip - a.gap - 1e-7 <= j_cvx
        assert b.q.min() >= 0
    print(f"max |atom difference| over {len(tables)} tables: {worst:.2e} bits")


def test_certificate_is_a_feasible_q_and_a_valid_lower_bound():
    for P in random_tables(30, seed=4):
        r = broja_pid(P)
        assert np.abs(r.q.sum(1) - P.sum(1)).max() < 1e-13  # Q(t, y) = P(t, y)
        assert np.abs(r.q.sum(0) - P.sum(0)).max() < 1e-13  # Q(s, y) = P(s, y)
        assert r.q.min() >= 0 and np.all(r.q[P.sum(1)[:, None, :] * P.sum(0)[None] == 0] == 0)
        # the returned Q achieves the reported J within the gap
        j_q = mutual_information(r.q, 2, (0, 1))
        assert r.i_yts - r.syn - 1e-12 <= j_q <= r.i_yts - r.syn + r.gap + 1e-12


def test_theorem_3_2_properties_on_random_tables():
    rng = np.random.default_rng(5)
    for P2 in random_tables(60, seed=6, max_shape=(8, 5, 4)):
        r2 = broja_pid(P2)
        # 1. atoms are non-negative; they sum to I(Y;T,S); Uni + Red = I(Y;T) and I(Y;S)
        assert min(getattr(r2, k) for k in ATOMS) >= 0
        assert sum(getattr(r2, k) for k in ATOMS) == pytest.approx(r2.i_yts, abs=1e-12)
        assert r2.uni_t + r2.red == pytest.approx(r2.i_yt, abs=1e-12)
        assert r2.uni_s + r2.red == pytest.approx(r2.i_ys, abs=1e-12)
        # 3. T1 = h(T2) for a random deterministic h: Uni(Y:T1\S) <= Uni(Y:T2\S)
        h = rng.integers(0, max(1, P2.shape[0] - 1), size=P2.shape[0])
        P1 = np.zeros((h.max() + 1,) + P2.shape[1:])
        np.add.at(P1, h, P2)
        r1 = broja_pid(P1)
        assert r1.uni_t <= r2.uni_t + r1.gap + r2.gap + 1e-12
        # 2. Uni(Y:T\S) = 0 implies I(Y;S) = max(I(Y;T), I(Y;S))
        if r2.uni_t <= r2.gap:
            assert r2.i_ys >= r2.i_yt - 2 * r2.gap - 1e-12


def test_zero_rows_columns_and_entries_are_removed_exactly():
    P, exact = gates()["AND"]
    padded = np.zeros((4, 3, 5))
    padded[1:3, :2, 2:4] = P
    r = broja_pid(padded)
    assert r.red == pytest.approx(exact["red"], abs=1e-9) and r.syn == pytest.approx(exact["syn"], abs=1e-9)
    assert r.q.shape == padded.shape and r.q[0].sum() == 0 and r.q[:, 2].sum() == 0


def test_tiny_probabilities_are_still_certified():
    rng = np.random.default_rng(7)
    for _ in range(10):
        P = rng.dirichlet(np.full(6 * 5 * 4, 0.05)).reshape(6, 5, 4)  # entries down to 1e-40
        r = broja_pid(P)
        assert r.gap <= 1e-9 and min(getattr(r, k) for k in ATOMS) >= 0


def test_peaked_tables_reach_a_tight_certificate():
    # Dirichlet(0.01-0.05) tables (entries down to about 1e-291) and multinomial counts from
    # them. An earlier version stalled on ~5% of these, at gaps up to 1e-3 bits; the first table
    # here (a 4x4x3) ended at 2.6e-4 bits after 52 iterations.
    rng = np.random.default_rng(12)
    tables = [random_tables(300, seed=11)[136]]
    for i in range(200):
        shape = tuple(int(v) for v in rng.integers(2, [9, 9, 7]))
        P = rng.dirichlet(np.full(int(np.prod(shape)), [0.01, 0.02, 0.05][i % 3])).reshape(shape)
        if i % 4 == 0:
            P = rng.multinomial(200, P.ravel()).reshape(shape) / 200.0
        tables.append(P)
    gaps = np.array([broja_pid(P).gap for P in tables])
    assert gaps.max() <= 1e-9, (gaps.argmax(), gaps.max())


def test_batch_matches_single_solves_and_handles_mixed_shapes():
    tables = random_tables(12, seed=8)
    batch = broja_pid_batch(tables)
    for P, b in zip(tables, batch):
        a = broja_pid(P)
        assert max(abs(getattr(a, k) - getattr(b, k)) for k in ATOMS) <= a.gap + b.gap + 1e-12
        assert b.q.shape == P.shape


def test_symmetry_units_and_serialisation():
    P = random_tables(1, seed=9)[0]
    r = broja_pid(P)
    swapped = broja_pid(P.transpose(1, 0, 2))
    assert swapped.uni_t == pytest.approx(r.uni_s, abs=1e-10) and swapped.red == pytest.approx(r.red, abs=1e-10)
    nats = broja_pid(P, unit="nats")
    assert nats.unit == "nats" and nats.red == pytest.approx(r.red * LN2, abs=1e-10)
    d = json.loads(json.dumps(r.to_dict()))
    assert set(ATOMS) <= set(d) and d["unit"] == "bits" and d["gap"] == r.gap


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 2)) / 4, "3 axes"),
    (np.full((2, 2, 2), 0.2), "sums to"),
    (-np.ones((2, 2, 2)) / 8, "negative"),
    (np.full((2, 2, 2), np.nan), "non-finite"),
    (np.zeros((0, 2, 2)), "empty alphabet"),
])
def test_invalid_input_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        broja_pid(bad)


def test_counts_with_normalize_and_unknown_solver():
    P, exact = gates()["SUM"]
    assert broja_pid(P * 12, normalize=True).red == pytest.approx(exact["red"], abs=1e-9)
    with pytest.raises(ValueError, match="solver"):
        broja_pid(P, solver="dit")


def test_red_intersection_lower_bounds_red_theorem_4_1():
    # exact on the gates: RDN and Example 2 (S = U1) have a common part, the others none
    expected = {"RDN": 1.0, "EX2_S=U1": 0.721928094887362}
    for name, (P, _) in gates().items():
        assert red_intersection(P).value == pytest.approx(expected.get(name, 0.0), abs=1e-12)
    rng = np.random.default_rng(10)
    for _ in range(40):
        # tables with a planted common part: y = (c, noise), t and s both reveal c
        c = rng.integers(0, 3, 400)
        y = c * 2 + rng.integers(0, 2, 400)
        t = c * 2 + rng.integers(0, 2, 400)
        s = c * 3 + rng.integers(0, 3, 400)
        leak = rng.random(400) < rng.choice([0.0, 0.02])  # sometimes s also mixes up the c's
        s[leak] = rng.integers(0, 9, leak.sum())
        P = np.zeros((6, 9, 6))
        np.add.at(P, (t, s, y), 1.0)
        P /= P.sum()
        ri, r = red_intersection(P), broja_pid(P)
        assert ri.value <= r.red + r.gap + 1e-12
        assert ri.value == pytest.approx(intersection_brute_force(P), abs=1e-12)
        if not leak.any():  # the common part c is found exactly: Red_cap = H(c)
            assert ri.value == pytest.approx(entropy(np.bincount(c, minlength=3) / 400), abs=1e-12)
