"""ZeRO-style sharded optimizer state, with checkpoints that resume at another world size.

PyTorch's `ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=...)` keeps each
optimizer-state element on one rank only. Here that is `DistributedOptimizer(Adam(...),
shard_state=True)`: gradients are reduce-scattered, each rank steps its own slice of Adam's state, and
the parameters are all-gathered. `distributed.checkpoint.save` writes one shard per rank (no
`consolidate_state_dict()` onto rank 0 first), and `checkpoint.load` reads it back at any world size,
into a sharded or a plain optimizer.

    mpiexec -n 2 python examples/zero_checkpoints.py --checkpoint ckpt --epochs 3
    mpiexec -n 3 python examples/zero_checkpoints.py --checkpoint ckpt --epochs 6 --resume
    python examples/zero_checkpoints.py --checkpoint ckpt --epochs 8 --resume    # or in one process
"""

import argparse

import numpy as np

import lucid
from lucid import nn, optim
from lucid.data import DataLoader
from lucid.datasets import Digits

import distributed
from distributed import checkpoint

parser = argparse.ArgumentParser(description="Adam with ZeRO-style sharded state and sharded checkpoints")
parser.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory (written every epoch)")
parser.add_argument("--epochs", type=int, default=3, help="train until this epoch")
parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in DIR")
parser.add_argument("--batch-size", type=int, default=64, help="global batch, split across the ranks")
parser.add_argument("--lr", type=float, default=1e-2)


def state_elements(optimizer) -> int:
    """Elements of optimizer state this rank holds (the wrapped optimizer keeps only this rank's slices)."""
    return sum(np.size(value) for state in optimizer.optimizer.state.values()
               for name, value in state.items() if name != "step")


@lucid.no_grad()
def test_accuracy(model, dataset) -> float:
    model.eval()
    images, labels = dataset.tensors
    return float(model(images).argmax(dim=1).eq(labels).float().mean().item())


def main(args):
    world = distributed.init()
    lucid.manual_seed(0)
    train_set, test_set = Digits(train=True), Digits(train=False)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=args.lr),
                                                 named_parameters=model.named_parameters(), shard_state=True)
    first = 0
    if args.resume:
        extra = checkpoint.load(args.checkpoint, model=model, optimizer=optimizer)  # any world size
        first = extra["epoch"]
        if world.rank == 0:
            print(f"resumed {args.checkpoint} at epoch {first} (saved on {extra['world_size']} ranks)")
    else:
        distributed.broadcast_parameters(model.state_dict(), root_rank=0)
    sampler = distributed.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=max(1, args.batch_size // world.size), sampler=sampler)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first, args.epochs):
        model.train()
        sampler.set_epoch(epoch)
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
        checkpoint.save(args.checkpoint, model=model, optimizer=optimizer,  # every rank writes its shard
                        extra={"epoch": epoch + 1, "world_size": world.size})
        accuracy = test_accuracy(model, test_set)
        held = distributed.allgather_object(state_elements(optimizer))
        if world.rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: last loss {loss.item():.4f}, test accuracy {accuracy:.3f}, "
                  f"Adam state elements per rank {held} (of {sum(held)}), saved {args.checkpoint}", flush=True)
    full = optimizer.state_dict()  # collective: the whole state, as one process would have it
    if world.rank == 0:
        print(f"full state dict: {len(full['state'])} parameters, step {int(full['state'][0]['step'])}")
        print(f"test accuracy: {test_accuracy(model, test_set):.3f}", flush=True)


if __name__ == "__main__":
    main(parser.parse_args())
