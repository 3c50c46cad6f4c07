"""ridrepro: reproduce and extend 'Quantifying Knowledge Distillation Using PID' (RID)."""

__version__ = "0.1.0"
