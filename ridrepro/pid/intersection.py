"""Red-intersection (paper Definition 4.1, Griffith and Ho's I_alpha) over deterministic Q = g(Y).

Definition 4.1 maximises I(Y; Q) over channels P(Q|Y) subject to I(Y; Q | T) = I(Y; Q | S) = 0.
Restricting to deterministic Q = g(Y) gives a computable lower bound (hence, by Theorem 4.1, a
lower bound on Red). For Q = g(Y), I(Y; Q | T) = H(g(Y) | T), so the constraints say that g(Y) is
almost surely a function of T and a function of S: every T value, and every S value, sees only one
block of g. The feasible partitions of the y's with P(y) > 0 are therefore exactly the coarsenings of
the connected components of the graph linking y and y' whenever some t (or some s) has both with
positive probability; and refining a partition never lowers H(g(Y)) = I(Y; g(Y)). So the best g is
the component labelling itself: exact for every alphabet size, no enumeration needed.
"""

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components

from .measures import unit_factor, validate_joint


@dataclass
class IntersectionResult:
    value: float  # max I(Y; g(Y)) over feasible deterministic g, in `unit`
    g: np.ndarray  # g[y]: block label of each y (-1 where P(y) = 0)
    unit: str


def red_intersection(P, unit="bits", normalize=False):
    """Best deterministic Q = g(Y) in Definition 4.1 for P[t, s, y]; a lower bound on Red."""
    P = validate_joint(P, ndim=3, normalize=normalize)
    Pty, Psy, Py = P.sum(1) > 0, P.sum(0) > 0, P.sum((0, 1))
    # y ~ y' when a t or an s has both with positive probability
    linked = (Pty.T.astype(int) @ Pty.astype(int) > 0) | (Psy.T.astype(int) @ Psy.astype(int) > 0)
    keep = np.flatnonzero(Py > 0)
    _, labels = connected_components(linked[np.ix_(keep, keep)], directed=False)
    g = np.full(P.shape[2], -1)
    g[keep] = labels
    mass = np.bincount(labels, weights=Py[keep])
    # max(., 0): a single block has mass 1 up to round-off, and H(g(Y)) >= 0 is exact
    value = max(float((mass * np.log(1.0 / mass)).sum()), 0.0) * unit_factor(unit)
    return IntersectionResult(value=value, g=g, unit=unit)


def intersection_brute_force(P, unit="bits"):
    """max H(g(Y)) over all set partitions g of the y's with P(y) > 0 that satisfy
    H(g(Y)|T) = H(g(Y)|S) = 0, by enumeration (Bell-number many): a check for small |Y| only."""
    P = validate_joint(P, ndim=3)
    Py = P.sum((0, 1))
    ys = list(np.flatnonzero(Py > 0))
    if len(ys) > 9:
        raise ValueError(f"brute force is for |Y| <= 9 outcomes with P(y) > 0, got {len(ys)}")
    Pty, Psy = P.sum(1) > 0, P.sum(0) > 0
    best = 0.0

    def partitions(items):
        if not items:
            yield []
            return
        head, rest = items[0], items[1:]
        for part in partitions(rest):
            for i in range(len(part)):
                yield part[:i] + [[head] + part[i]] + part[i + 1:]
            yield [[head]] + part

    for part in partitions(ys):
        label = {y: i for i, block in enumerate(part) for y in block}
        # feasible: no t or s has positive probability on two different blocks
        ok = all(len({label[y] for y in np.flatnonzero(row) if y in label}) <= 1 for row in np.vstack([Pty, Psy]))
        if ok:
            mass = np.array([Py[block].sum() for block in part])
            best = max(best, float((mass * np.log(1.0 / mass)).sum()))
    return best * unit_factor(unit)
