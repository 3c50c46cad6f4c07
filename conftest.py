"""Shared by the unit tests and the chapters' nbval runs."""

import torch


def pytest_report_header(config):
    # The kernel path decides the float bits of everything torch computes on the CPU (README, Results).
    return f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}"
