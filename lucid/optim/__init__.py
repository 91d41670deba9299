"""lucid.optim: the Optimizer base class, PyTorch's optimizers and lr schedulers, swa_utils, and the fused step.

A new elementwise optimizer follows the protocol documented (with a worked example) in
`lucid.optim.elementwise`; a plain one defines `__init__` and `step`.
"""

from . import elementwise, lr_scheduler, swa_utils
from ._backend_numba import set_kernel_threads
from .adadelta import Adadelta
from .adafactor import Adafactor
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .asgd import ASGD
from .lbfgs import LBFGS
from .muon import Muon
from .nadam import NAdam
from .optimizer import Optimizer, required
from .radam import RAdam
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD
from .sparse_adam import SparseAdam

__all__ = ["Optimizer", "required", "set_kernel_threads", "SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam",
           "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop", "SparseAdam", "LBFGS", "Adafactor", "Muon",
           "lr_scheduler", "swa_utils", "elementwise"]
