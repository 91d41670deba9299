"""lucid.nn: Parameter, Module, layers and losses with PyTorch's names and signatures."""

from . import functional, init, utils
from .module import Module
from .modules import *  # the layer and loss classes, as listed in modules.__all__
from .modules import __all__ as _modules_all
from .parameter import Parameter

__all__ = ["Module", "Parameter", "functional", "init", "utils"] + list(_modules_all)
