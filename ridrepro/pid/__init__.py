"""Partial information decomposition (BROJA) for the RID reproduction.

Plain functions on explicit joint distributions P[t, s, y] (numpy arrays), bits by default:
entropy, mutual_information, conditional_mutual_information; broja_pid (certified solver) and
broja_pid_batch; red_intersection (Definition 4.1 lower bound); representation_pid (features ->
clusters -> PID, with presets, bootstrap and shuffled-label null).
"""

from .broja import PIDResult, broja_pid, broja_pid_batch
from .measures import conditional_entropy, conditional_mutual_information, entropy, mutual_information

__all__ = [
    "PIDResult", "broja_pid", "broja_pid_batch",
    "entropy", "conditional_entropy", "mutual_information", "conditional_mutual_information",
]
