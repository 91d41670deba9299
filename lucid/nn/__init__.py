"""lucid.nn: Parameter, Module, layers and losses with PyTorch's names and signatures."""

from .module import Module
from .parameter import Parameter
