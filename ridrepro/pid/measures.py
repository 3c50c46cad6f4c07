"""Shannon measures on explicit joint distributions (dit style: plain functions, exact values).

A joint distribution is a numpy array whose axes are the variables, e.g. P[t, s, y]. Variables are
named by axis number, or by a tuple of axes for a joint variable. Bits by default, nats on request.
"""

import math

import numpy as np

UNITS = {"bits": 1.0 / math.log(2.0), "nats": 1.0}
SUM_TOLERANCE = 1e-9


def unit_factor(unit):
    """Multiplier from nats to `unit`."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {sorted(UNITS)}, got {unit!r}")
    return UNITS[unit]


def validate_joint(p, ndim=None, normalize=False, name="P"):
    """Return `p` as a float64 array that is a probability table, or raise ValueError saying why.

    normalize=True accepts any non-negative table with a positive total (e.g. counts) and divides
    by the total; otherwise the table must already sum to 1 within 1e-9.
    """
    if hasattr(p, "detach"):  # torch tensor, on any device
        p = p.detach().cpu().numpy()
    arr = np.asarray(p)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {arr.shape}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a scalar")
    if 0 in arr.shape:
        raise ValueError(f"{name} has an empty alphabet: shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite entries (nan or inf)")
    if np.any(arr < 0):
        raise ValueError(f"{name} has {int((arr < 0).sum())} negative entries (min {arr.min():.3g})")
    total = arr.sum()
    if normalize:
        if total <= 0:
            raise ValueError(f"{name} sums to 0; cannot normalise an all-zero table")
        return arr / total
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"{name} sums to {total:.12g}, not 1; pass normalize=True (--normalize) for counts"
        )
    return arr


def _axes(a, ndim):
    axes = (a,) if isinstance(a, (int, np.integer)) else tuple(a)
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} out of range for a {ndim}-variable distribution")
    return tuple(sorted({ax % ndim for ax in axes}))


def _h(p, keep):
    """Entropy in nats of the marginal of validated `p` on axes `keep` (0 log 0 = 0)."""
    drop = tuple(ax for ax in range(p.ndim) if ax not in keep)
    m = p.sum(axis=drop) if drop else p
    m = m[m > 0]
    return float(-(m * np.log(m)).sum())


def entropy(p, axes=None, unit="bits", normalize=False):
    """H of the variables on `axes` (default: all of them) of the joint distribution `p`."""
    p = validate_joint(p, normalize=normalize)
    keep = tuple(range(p.ndim)) if axes is None else _axes(axes, p.ndim)
    return _h(p, keep) * unit_factor(unit)


def conditional_entropy(p, x, z, unit="bits", normalize=False):
    """H(X | Z) = H(X, Z) - H(Z)."""
    p = validate_joint(p, normalize=normalize)
    x, z = _axes(x, p.ndim), _axes(z, p.ndim)
    return (_h(p, tuple(set(x) | set(z))) - _h(p, z)) * unit_factor(unit)


def mutual_information(p, x=0, y=1, unit="bits", normalize=False):
    """I(X; Y) = H(X) + H(Y) - H(X, Y). For a PID table P[t, s, y], I(Y; T) is mutual_information(P, 2, 0)."""
    p = validate_joint(p, normalize=normalize)
    x, y = _axes(x, p.ndim), _axes(y, p.ndim)
    value = _h(p, x) + _h(p, y) - _h(p, tuple(set(x) | set(y)))
    return max(value, 0.0) * unit_factor(unit)  # clip only float round-off: I >= 0 is a theorem


def conditional_mutual_information(p, x=0, y=1, z=2, unit="bits", normalize=False):
    """I(X; Y | Z) = H(X, Z) + H(Y, Z) - H(X, Y, Z) - H(Z)."""
    p = validate_joint(p, normalize=normalize)
    x, y, z = _axes(x, p.ndim), _axes(y, p.ndim), _axes(z, p.ndim)
    xz, yz, xyz = set(x) | set(z), set(y) | set(z), set(x) | set(y) | set(z)
    value = _h(p, tuple(xz)) + _h(p, tuple(yz)) - _h(p, tuple(xyz)) - _h(p, z)
    return max(value, 0.0) * unit_factor(unit)
