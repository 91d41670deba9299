"""Train a digits classifier with lucid, data-parallel over MPI ranks through distributed.

The same script runs in one process and under an MPI launcher, with no other change:

    python scripts/train.py
    mpiexec -n 2 python scripts/train.py [--model cnn] [--optimizer SGD --lr 0.05] [--shard-state]
    mpiexec -n 2 python scripts/train.py --device gpu     # one GPU per rank (local rank % GPUs)

Each rank trains on its own share of every global batch (DistributedSampler), the gradients are
averaged across ranks by DistributedOptimizer, and every rank evaluates the whole (small) test split.
Rank 0 prints one line per epoch; the last line printed is `test accuracy: 0.xxx`. With
`--checkpoint DIR` a checkpoint is written after every epoch, and `--resume` continues from it at any
world size.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

import distributed  # noqa: E402
import lucid  # noqa: E402
from lucid import nn, optim  # noqa: E402
from lucid.data import DataLoader  # noqa: E402
from lucid.datasets import Digits  # noqa: E402
from lucid.optim import lr_scheduler  # noqa: E402

OPTIMIZERS = [name for name in optim.__all__ if name != "Optimizer" and isinstance(getattr(optim, name), type)
              and issubclass(getattr(optim, name), optim.Optimizer)]
# Peak learning rates (the default schedule is one-cycle) that train the defaults well; an optimizer not
# listed uses its own default lr.
DEFAULT_LR = {"Adam": 1e-2, "AdamW": 1e-2, "Adamax": 1e-2, "NAdam": 1e-2, "RAdam": 1e-2, "SparseAdam": 1e-2,
              "RMSprop": 1e-3, "SGD": 0.05, "ASGD": 0.4, "Adagrad": 0.05, "LBFGS": 1.0}
EXTRA_KWARGS = {"SGD": {"momentum": 0.9},
                "LBFGS": {"max_iter": 4, "history_size": 10, "line_search_fn": "strong_wolfe"}}
SCHEDULERS = ("none", "cosine", "step", "onecycle")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="mlp: 64-H-H-10 with ReLU; cnn: two 3x3 conv + max-pool blocks on the 8x8 image")
    parser.add_argument("--hidden", type=int, default=256, help="H, the width of the MLP's hidden layers")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="global batch size, split evenly across the ranks")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"learning rate (default: per optimizer, {DEFAULT_LR}, else its own default)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="Adam",
                        help=f"a lucid.optim optimizer (extra arguments: {EXTRA_KWARGS})")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="onecycle",
                        help="learning-rate schedule, stepped once per batch")
    parser.add_argument("--shard-state", action="store_true",
                        help="shard optimizer state across ranks (ZeRO); needs an elementwise optimizer")
    parser.add_argument("--compression", choices=("none", "fp16"), default="none",
                        help="send gradients as float16")
    parser.add_argument("--checkpoint", metavar="DIR", default=None,
                        help="write a checkpoint to DIR after every epoch")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --checkpoint DIR (saved at any world size)")
    parser.add_argument("--device", default="cpu", metavar="{cpu,gpu,gpu:N}",
                        help="where the model trains: gpu is each rank's own GPU (distributed.init() picks "
                             "local rank %% GPUs), gpu:N is GPU N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and the split")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after epoch N, as if preempted (the schedule still spans --epochs; "
                             "continue with --resume)")
    args = parser.parse_args(argv)
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint DIR")
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1:
        parser.error("--epochs, --batch-size and --hidden must be positive")
    if not re.fullmatch(r"cpu|(gpu|cuda)(:\d+)?", args.device):
        parser.error(f"--device must be cpu, gpu or gpu:N, not {args.device!r}")
    return args


def check_device(device: str) -> None:
    """Exit with the reason when `device` is a GPU this process cannot use (checked after
    distributed.init(), so that the check already runs on this rank's own GPU)."""
    if device != "cpu" and not lucid.gpu_available():
        raise SystemExit(f"--device {device}: no usable GPU here: {lucid.gpu.unavailable_reason()}")


def build_model(kind: str, hidden: int = 256) -> nn.Module:
    """The classifier: 64 features in, 10 logits out."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, 10))
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 2 x 2
        nn.Flatten(), nn.Linear(128, 10))


def build_optimizer(model: nn.Module, args) -> distributed.DistributedOptimizer:
    """The chosen lucid optimizer, wrapped for data parallelism (the options converted here, once)."""
    kwargs = dict(EXTRA_KWARGS.get(args.optimizer, {}))
    lr = args.lr if args.lr is not None else DEFAULT_LR.get(args.optimizer)
    if lr is not None:
        kwargs["lr"] = lr
    base = getattr(optim, args.optimizer)(model.parameters(), **kwargs)
    compression = {"none": distributed.Compression.none, "fp16": distributed.Compression.fp16}[args.compression]
    return distributed.DistributedOptimizer(base, model.named_parameters(), compression=compression,
                                            shard_state=args.shard_state)


def build_scheduler(optimizer, name: str, epochs: int, steps_per_epoch: int, peak_lrs: list):
    """A per-batch learning-rate schedule, or None for a constant learning rate.

    `peak_lrs` are the groups' learning rates as configured (a resumed optimizer holds the last
    scheduled ones instead); OneCycleLR peaks at them.
    """
    total = epochs * steps_per_epoch
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if name == "onecycle":
        # cycle momentum (or beta1) only where the optimizer uses it, as torch requires
        cycle = all("betas" in g or g.get("momentum", 0) > 0 for g in optimizer.param_groups)
        return lr_scheduler.OneCycleLR(optimizer, max_lr=list(peak_lrs), total_steps=total, cycle_momentum=cycle)
    return None


def fast_forward(scheduler, steps: int) -> None:
    """Advance a fresh schedule to where a resumed run stands (the schedule depends on steps only)."""
    if scheduler is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()" is intended here
        for _ in range(steps):
            scheduler.step()


def make_loaders(args, world_size: int):
    """This rank's training loader (its share of each global batch) and the whole test split."""
    train, test = Digits(train=True, seed=args.seed), Digits(train=False, seed=args.seed)
    per_rank = max(1, args.batch_size // world_size)
    if per_rank * world_size != args.batch_size and distributed.rank() == 0:
        print(f"note: a global batch of {args.batch_size} does not split over {world_size} ranks; "
              f"using {per_rank} per rank ({per_rank * world_size} in all)")
    sampler = distributed.DistributedSampler(train, shuffle=True, seed=args.seed)
    return DataLoader(train, batch_size=per_rank, sampler=sampler), test


def train_step(model, optimizer, loss_fn, x, y, is_lbfgs: bool):
    """One optimizer step on this rank's batch (on the model's device); returns the local loss and logits."""
    if is_lbfgs:
        return lbfgs_step(model, optimizer, loss_fn, x, y)
    optimizer.zero_grad()
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()  # the gradient hooks start the all-reduce of each bucket as it fills
    optimizer.step()
    return loss.item(), logits


def lbfgs_step(model, optimizer, loss_fn, x, y):
    """L-BFGS evaluates the closure itself; the wrapper reduces every evaluation's gradients and loss."""
    last = {}

    def closure():
        optimizer.zero_grad()
        last["logits"] = model(x)
        loss = loss_fn(last["logits"], y)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    return float(loss.item() if hasattr(loss, "item") else loss), last["logits"]


def train_epoch(model, optimizer, scheduler, loader, bar, device: str = "cpu") -> tuple[float, float]:
    """One pass over this rank's share; returns the mean loss and accuracy over all ranks."""
    model.train()
    loss_fn, is_lbfgs = nn.CrossEntropyLoss(), getattr(optimizer.optimizer, "requires_closure", False)
    totals = np.zeros(3)  # loss * n, correct, n
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss, logits = train_step(model, optimizer, loss_fn, x, y, is_lbfgs)
        if scheduler is not None:
            scheduler.step()
        n = len(y.data)
        totals += (loss * n, int((logits.data.argmax(axis=1) == y.data).sum()), n)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    distributed.allreduce(totals, distributed.Sum)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


@lucid.no_grad()
def evaluate(model, dataset, device: str = "cpu") -> float:
    """Accuracy on a whole dataset (each rank evaluates all of it: the test split is tiny)."""
    model.eval()
    x, y = (t.to(device) for t in dataset.tensors)
    predictions = model(x).data.argmax(axis=1)
    return float((predictions == y.data).mean())


def resume(path: str, model, optimizer) -> int:
    """Load the checkpoint at `path`; returns the first epoch still to train."""
    from distributed import checkpoint
    extra = checkpoint.load(path, model=model, optimizer=optimizer)
    if distributed.rank() == 0:
        print(f"resumed from {path}: epoch {extra['epoch'] + 1} done (saved on {extra.get('world_size')} ranks)")
    return int(extra["epoch"]) + 1


def save(path: str, model, optimizer, epoch: int, args, metrics: dict) -> None:
    """Write this epoch's checkpoint (every rank writes its shard)."""
    from distributed import checkpoint
    extra = {"epoch": epoch, "world_size": distributed.size(), "model": args.model,
             "optimizer": args.optimizer, "seed": args.seed, **metrics}
    checkpoint.save(path, model=model, optimizer=optimizer, extra=extra)


def progress_bar(total: int, initial: int):
    """A tqdm bar over all training batches, on rank 0 only (a silent stand-in elsewhere).

    Only on a terminal: in a log file or a pipe (CI, `mpiexec ... > log`) a bar is a stream of
    carriage-return redraws, so there the output is just the plain per-epoch lines.
    """
    from tqdm import tqdm
    on_terminal = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="train", unit="batch", leave=True, dynamic_ncols=True,
                disable=distributed.rank() != 0 or not on_terminal, file=sys.stderr)


def fit(args) -> float:
    """Set up, train for the remaining epochs, and return the final test accuracy."""
    world = distributed.init()
    check_device(args.device)
    lucid.manual_seed(args.seed)  # the same seed everywhere; rank 0's weights are broadcast anyway
    model = build_model(args.model, args.hidden).to(args.device)  # "gpu": the GPU init() chose for this rank
    optimizer = build_optimizer(model, args)
    loader, test = make_loaders(args, world.size)
    peak_lrs = [group["lr"] for group in optimizer.param_groups]
    start = resume(args.checkpoint, model, optimizer) if args.resume else 0
    if not args.resume:
        distributed.broadcast_parameters(model.named_parameters(), root_rank=0)
    scheduler = build_scheduler(optimizer, args.scheduler, args.epochs, len(loader), peak_lrs)
    fast_forward(scheduler, start * len(loader))
    accuracy = evaluate(model, test, args.device)
    if world.rank == 0:
        where = "" if args.device == "cpu" else f" on {args.device}"
        print(f"{args.model} on {world.size} rank(s){where}, {args.optimizer} ({args.scheduler} schedule), global "
              f"batch {loader.batch_size * world.size}, epochs {start + 1}..{args.epochs}", flush=True)
    bar = progress_bar(args.epochs * len(loader), start * len(loader))
    stop = args.epochs if args.stop_after is None else min(args.epochs, args.stop_after)
    for epoch in range(start, stop):
        loader.sampler.set_epoch(epoch)
        loss, train_acc = train_epoch(model, optimizer, scheduler, loader, bar, args.device)
        accuracy = evaluate(model, test, args.device)
        if world.rank == 0:
            bar.write(f"epoch {epoch + 1:3d}/{args.epochs}  loss {loss:.4f}  train acc {train_acc:.3f}  "
                      f"test acc {accuracy:.3f}  lr {optimizer.param_groups[0]['lr']:.2e}", file=sys.stdout)
        if args.checkpoint:
            save(args.checkpoint, model, optimizer, epoch, args, {"loss": loss, "test_accuracy": accuracy})
    bar.close()
    return accuracy


def main(argv=None) -> float:
    """Train, then print the final test accuracy as the last line (rank 0)."""
    args = parse_args(argv)
    accuracy = fit(args)
    if distributed.rank() == 0:
        print(f"test accuracy: {accuracy:.3f}", flush=True)
    return accuracy


if __name__ == "__main__":
    main()
