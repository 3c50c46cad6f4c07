"""A PID result: the atoms with their certificate, and how a solver's bounds become atoms."""

from dataclasses import dataclass, field

import numpy as np

from .measures import _h, unit_factor

ATOMS = ("red", "uni_t", "uni_s", "syn", "i_yt", "i_ys", "i_yts", "gap")


@dataclass
class PIDResult:
    """BROJA atoms of one distribution P[t, s, y], in `unit`; `gap` bounds the error of every atom."""

    red: float
    uni_t: float
    uni_s: float
    syn: float
    i_yt: float
    i_ys: float
    i_yts: float
    gap: float
    unit: str
    q: np.ndarray = field(default=None, repr=False)  # an optimal Q[t, s, y] (within gap), full shape
    solver: str = "ip"
    iterations: int = 0
    settings: dict = field(default_factory=dict)  # features path: preset, seed, sizes
    extras: dict = field(default_factory=dict)  # features path: bootstrap CIs, shuffled-label null

    def to_dict(self):
        out = {k: float(getattr(self, k)) for k in ATOMS}
        out.update(unit=self.unit, solver=self.solver, iterations=int(self.iterations))
        out.update(settings=dict(self.settings), **self.extras)
        return out

    def atoms(self):
        return {k: getattr(self, k) for k in ATOMS}


# ----------------------------------------------------------------------------------------------
# Interior-point core, batched: P has shape (B, nt, ns, ny); members may contain zero rows/columns.


def _measures(P):
    """(H(Y), I(Y;T), I(Y;S), I(Y;T,S)) in nats for one validated P[t, s, y]."""
    hy, ht, hs, hts = _h(P, (2,)), _h(P, (0,)), _h(P, (1,)), _h(P, (0, 1))
    i_yt = hy + ht - _h(P, (0, 2))
    i_ys = hy + hs - _h(P, (1, 2))
    i_yts = hy + hts - _h(P, (0, 1, 2))
    return hy, max(i_yt, 0.0), max(i_ys, 0.0), max(i_yts, 0.0)


def result_from_bounds(P, lower, upper, q, unit, solver, iterations=0):
    """Atoms from bounds lower <= J* <= upper (nats). J is clipped to the theorem bounds
    max(I(Y;T), I(Y;S)) <= J* <= min(I(Y;T) + I(Y;S), I(Y;T,S)), so atoms are exactly >= 0."""
    _, i_yt, i_ys, i_yts = _measures(P)
    lower = max(lower, i_yt, i_ys)
    upper = min(upper, i_yts)
    j = float(min(max(upper, lower), i_yt + i_ys))  # plain floats: numpy scalars leak into reprs and JSON
    lower, upper = float(lower), float(upper)
    k = unit_factor(unit)
    # Each atom is >= 0 in exact arithmetic given the clipping of j; max() only removes round-off.
    return PIDResult(
        red=max(i_yt + i_ys - j, 0.0) * k, uni_t=max(j - i_ys, 0.0) * k, uni_s=max(j - i_yt, 0.0) * k,
        syn=max(i_yts - j, 0.0) * k,
        i_yt=i_yt * k, i_ys=i_ys * k, i_yts=i_yts * k, gap=max(upper - lower, 0.0) * k,
        unit=unit, q=q, solver=solver, iterations=iterations,
    )
