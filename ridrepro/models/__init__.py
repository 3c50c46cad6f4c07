"""Networks: CIFAR WideResNets in the authors' post-activation style and the standard pre-activation style."""

from ridrepro.models.wrn import WideResNet, count_parameters, init_authors_

__all__ = ["WideResNet", "count_parameters", "init_authors_"]
