"""Networks: CIFAR WideResNets in the authors' post-activation style and the standard pre-activation style."""

from ridrepro.models.wrn import WideResNet, count_parameters, init_authors_


def build_model(arch):
    """A WideResNet from a protocol's (depth, width, block)."""
    depth, width, block = arch
    return WideResNet(depth, width, block=block)


__all__ = ["WideResNet", "build_model", "count_parameters", "init_authors_"]
