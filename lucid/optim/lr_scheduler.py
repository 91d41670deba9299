"""lucid.optim.lr_scheduler: torch.optim.lr_scheduler's schedulers (and NoamScheduler), at torch's import path.

Each family lives in its own module: the base class in `_schedulers_base`, base-lr-times-factor schedules
in `_schedulers_decay`, user-function and Noam schedules in `_schedulers_functional`, cyclic ones in
`_schedulers_cyclic`, ReduceLROnPlateau in `_schedulers_plateau`, and the composites in `_schedulers_compose`.
"""

from ._schedulers_base import EPOCH_DEPRECATION_WARNING, LRScheduler, _LRScheduler  # noqa: F401 (torch's names)
from ._schedulers_compose import ChainedScheduler, SequentialLR
from ._schedulers_cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from ._schedulers_decay import (ConstantLR, CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, PolynomialLR,
                                StepLR)
from ._schedulers_functional import LambdaLR, MultiplicativeLR, NoamScheduler
from ._schedulers_plateau import ReduceLROnPlateau

__all__ = ["LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR",
           "SequentialLR", "CosineAnnealingLR", "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR",
           "CosineAnnealingWarmRestarts", "OneCycleLR", "PolynomialLR", "LRScheduler", "NoamScheduler"]
