"""distributed: data-parallel training of lucid models over MPI ranks (Horovod's interface).

Public names only. `import distributed` does not import mpi4py; `init()` does, when a launcher
started the process.
"""

from lucid._version import __version__  # one version for the whole distribution

from . import checkpoint
from .comm import (Average, Communicator, MPIComm, ReduceOp, SelfComm, Sum, init, is_initialized,
                   launched_by_mpi)
from .compression import Compression
from .control import CollectiveMismatchError, JoinedError
from .functions import (allgather, allgather_object, allreduce, broadcast, broadcast_object,
                        broadcast_optimizer_state, broadcast_parameters)
from .joining import join
from .optimizer import DistributedOptimizer, LayoutMismatchError
from .sampler import DistributedSampler
from .sync_batchnorm import SyncBatchNorm


def rank() -> int:
    """This process's rank in the world (0 without MPI)."""
    return init().rank


def size() -> int:
    """The number of ranks (1 without MPI)."""
    return init().size


def local_rank() -> int:
    """This process's rank among the ranks on its machine."""
    return init().local_rank


def local_size() -> int:
    """The number of ranks on this machine."""
    return init().local_size


def barrier() -> None:
    """Wait until every rank gets here."""
    init().barrier()


__all__ = ["init", "is_initialized", "rank", "size", "local_rank", "local_size", "barrier", "launched_by_mpi",
           "join", "Communicator", "SelfComm", "MPIComm", "ReduceOp", "Average", "Sum", "Compression",
           "DistributedOptimizer", "LayoutMismatchError", "CollectiveMismatchError", "JoinedError",
           "DistributedSampler", "SyncBatchNorm", "broadcast_parameters", "broadcast_optimizer_state",
           "broadcast_object", "allgather_object", "allreduce", "allgather", "broadcast", "checkpoint"]
