"""Partial information decomposition (BROJA) for the RID reproduction.

Plain functions on explicit joint distributions P[t, s, y] (numpy arrays), bits by default:
entropy, mutual_information, conditional_mutual_information; broja_pid (certified solver; the
cvxpy/Clarabel reference with solver="cvxpy") and broja_pid_batch; red_intersection (Definition 4.1
lower bound); representation_pid (features -> clusters -> PID, with presets, bootstrap and a
shuffled-label null). ridrepro.pid.gates.gates() holds the canonical distributions with their
exact atoms.
"""

from .broja import PIDResult, broja_pid, broja_pid_batch
from .features import PRESETS, discretize, pid_from_clusters, representation_pid
from .intersection import red_intersection
from .measures import conditional_entropy, conditional_mutual_information, entropy, mutual_information

__all__ = [
    "PIDResult", "broja_pid", "broja_pid_batch", "red_intersection",
    "representation_pid", "pid_from_clusters", "discretize", "PRESETS",
    "entropy", "conditional_entropy", "mutual_information", "conditional_mutual_information",
]
