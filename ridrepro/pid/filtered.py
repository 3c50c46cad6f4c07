"""The quantity RID's derivation actually bounds: the filtered intersection information, by enumeration.

Section 4 of the paper substitutes Q = f_t(T) into Definition 4.1, and the proof of Theorem 4.1 works
with deterministic filters f_t, f_s. What it bounds is therefore

    Red_f(Y:T,S) = max over deterministic f_t, f_s of I(Y; f_t(T))  s.t.  I(Y; f_t(T) | f_s(S)) = 0

(the other constraint of Definition 4.1, I(Y; Q | f_t(T)) = 0, holds for Q = f_t(T) by construction).
On finite alphabets a deterministic filter is a set partition of the values, so Red_f is computable by
trying every pair of partitions (Bell(|T|) * Bell(|S|) pairs): a check for small tables only. Theorem
4.1's proof gives Red_f <= Red; the component labelling of `red_intersection` gives a feasible pair,
so red_intersection <= Red_f.
"""

from dataclasses import dataclass

import numpy as np

from .measures import conditional_mutual_information, mutual_information, unit_factor, validate_joint


def set_partitions(n):
    """Every set partition of range(n) as a label array (restricted growth strings)."""
    def grow(prefix, top):
        if len(prefix) == n:
            yield np.array(prefix)
            return
        for label in range(top + 2):
            yield from grow(prefix + [label], max(top, label))
    if n == 0:
        yield np.zeros(0, int)
        return
    yield from grow([0], 0)


def _merge(P, labels, axis):
    out = np.zeros(P.shape[:axis] + (labels.max() + 1,) + P.shape[axis + 1:])
    np.add.at(np.moveaxis(out, axis, 0), labels, np.moveaxis(P, axis, 0))
    return out


@dataclass
class FilteredResult:
    value: float  # max I(Y; f_t(T)) over feasible deterministic filters, in `unit`
    f_t: np.ndarray  # label of each value of T (over the values with P(t) > 0)
    f_s: np.ndarray
    unit: str


def red_filtered_brute_force(P, unit="bits", tol=1e-12, max_values=6):
    """Red_f for P[t, s, y] by enumerating every pair of deterministic filters.

    A pair is feasible when I(Y; f_t(T) | f_s(S)) <= tol (in nats). Values with zero probability are
    dropped first; at most `max_values` values per source (Bell(6) = 203).
    """
    P = validate_joint(P, ndim=3)
    P = P[P.sum((1, 2)) > 0][:, P.sum((0, 2)) > 0]
    nt, ns = P.shape[:2]
    if max(nt, ns) > max_values:
        raise ValueError(f"brute force is for at most {max_values} values per source, got {nt} and {ns}")
    s_parts = list(set_partitions(ns))
    s_tables = [_merge(P, b, 1) for b in s_parts]
    best = FilteredResult(0.0, np.zeros(nt, int), np.zeros(ns, int), unit)
    for a in set_partitions(nt):
        Pa = _merge(P, a, 0)
        gain = mutual_information(Pa, 2, 0, unit="nats")
        if gain <= best.value / unit_factor(unit) + tol:
            continue
        for b, _ in zip(s_parts, s_tables):
            Pab = _merge(Pa, b, 1)
            if conditional_mutual_information(Pab, 2, 0, 1, unit="nats") <= tol:
                best = FilteredResult(gain * unit_factor(unit), a, b, unit)
                break
    return best
