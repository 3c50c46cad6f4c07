"""Canonical PID distributions as explicit joints P[t, s, y], with their exact BROJA atoms in bits.

Used by the tests, the benchmark and the book. T and S are independent uniform bits unless said
otherwise; the paper's Examples 1-3 are built from U1 ~ Ber(a), U2 ~ Ber(b).
"""

import itertools
import math

import numpy as np


def joint_from_samples(samples, shape=None):
    """P[t, s, y] from a list of ((t, s, y), probability) pairs; repeated outcomes add up."""
    if shape is None:
        shape = tuple(1 + max(o[i] for o, _ in samples) for i in range(3))
    p = np.zeros(shape)
    for outcome, prob in samples:
        p[outcome] += prob
    return p


def _bits(f):
    """P[t, s, y] with T, S uniform independent bits and y = f(t, s) (an int)."""
    return joint_from_samples([((t, s, f(t, s)), 0.25) for t, s in itertools.product((0, 1), repeat=2)])


def _from_u(f, a=0.5, b=0.5):
    """P[t, s, y] for U1 ~ Ber(a), U2 ~ Ber(b) independent and (t, s, y) = f(u1, u2)."""
    samples = []
    for u1, u2 in itertools.product((0, 1), repeat=2):
        samples.append((f(u1, u2), (a if u1 else 1 - a) * (b if u2 else 1 - b)))
    return joint_from_samples(samples)


def h2(a):
    """Binary entropy in bits."""
    return -a * math.log2(a) - (1 - a) * math.log2(1 - a)


def gates():
    """name -> (P[t, s, y], exact atoms in bits as dict red/uni_t/uni_s/syn), from pid.md."""
    h02 = h2(0.2)
    return {
        "XOR": (_bits(lambda t, s: t ^ s), dict(red=0, uni_t=0, uni_s=0, syn=1)),
        "AND": (_bits(lambda t, s: t & s), dict(red=1.5 - 0.75 * math.log2(3), uni_t=0, uni_s=0, syn=0.5)),
        "COPY": (_bits(lambda t, s: 2 * t + s), dict(red=0, uni_t=1, uni_s=1, syn=0)),
        "RDN": (joint_from_samples([((0, 0, 0), 0.5), ((1, 1, 1), 0.5)]), dict(red=1, uni_t=0, uni_s=0, syn=0)),
        "UNQ": (_bits(lambda t, s: t), dict(red=0, uni_t=1, uni_s=0, syn=0)),
        "SUM": (_bits(lambda t, s: t + s), dict(red=0.5, uni_t=0, uni_s=0, syn=1)),
        # Example 1: uninformative teacher. Y = U1, T = U2; S = Y, then S = U2.
        "EX1_S=Y": (_from_u(lambda u1, u2: (u2, u1, u1)), dict(red=0, uni_t=0, uni_s=1, syn=0)),
        "EX1_S=U2": (_from_u(lambda u1, u2: (u2, u2, u1)), dict(red=0, uni_t=0, uni_s=0, syn=0)),
        # Example 2: extra complex teacher T = (U1, U2) (coded 2*u1 + u2), U1 ~ Ber(0.2).
        "EX2_S=U1": (_from_u(lambda u1, u2: (2 * u1 + u2, u1, u1), a=0.2), dict(red=h02, uni_t=0, uni_s=0, syn=0)),
        "EX2_S=U2": (_from_u(lambda u1, u2: (2 * u1 + u2, u2, u1), a=0.2), dict(red=0, uni_t=h02, uni_s=0, syn=0)),
        # Example 3: synergy. Y = U1, T = U1 xor U2, S = U2.
        "EX3": (_from_u(lambda u1, u2: (u1 ^ u2, u2, u1)), dict(red=0, uni_t=0, uni_s=0, syn=1)),
    }
