"""Horovod's PyTorch MNIST example (examples/pytorch/pytorch_mnist.py), ported to lucid + distributed.

    mpiexec -n 2 python examples/horovod_mnist.py
    python examples/horovod_mnist.py                       # the same script in one process

What changed from Horovod's script, and why (everything else is line for line the original):

- imports: `lucid` for `torch`, `distributed` for `horovod.torch as hvd`;
- data: MNIST needs a download; lucid ships the 8x8 UCI digits (lucid.datasets.Digits), normalised
  with their own mean and standard deviation as MNIST is with its own. On 8x8 images `Net`'s two
  5x5 convolutions keep the image size (`padding=2`), so 20 x 2 x 2 = 80 features reach `fc1`
  instead of 320; the layers are otherwise Horovod's;
- defaults: the digits have 1,438 training images instead of 60,000, so one epoch is 12 steps at 2
  ranks instead of 469, and Horovod's lr 0.01 with momentum 0.5 would still be far from trained
  after 10 epochs: 25 epochs of lr 0.025 (times the number of ranks, as in Horovod) with
  momentum 0.9 reach 96-97% (tried with 5 seeds);
- `output.data` is a NumPy array in lucid (a tensor in torch), so the test loop calls `max`, `eq`
  and `view_as` on the tensors themselves;
- options lucid has no counterpart for are left out: Adasum, CUDA mixed precision, DataLoader
  workers, `horovod.run` (start the ranks with mpiexec instead);
- `F.log_softmax(x, dim=1)` and `reduction="sum"`: the original's implicit dim and `size_average`
  make torch (and lucid) print deprecation warnings;
- `lucid.gpu_available()` for `torch.cuda.is_available()`; one thread per rank and one GPU per rank
  are what `distributed.init()` sets up already.
"""

import argparse

import numpy as np

import lucid
import lucid.nn as nn
import lucid.nn.functional as F
import lucid.optim as optim
from lucid.data import DataLoader, TensorDataset
from lucid.datasets import Digits

import distributed

# Training settings
parser = argparse.ArgumentParser(description="lucid digits example (Horovod's PyTorch MNIST example)")
parser.add_argument("--batch-size", type=int, default=64, metavar="N",
                    help="input batch size for training (default: 64)")
parser.add_argument("--test-batch-size", type=int, default=1000, metavar="N",
                    help="input batch size for testing (default: 1000)")
parser.add_argument("--epochs", type=int, default=25, metavar="N",
                    help="number of epochs to train (default: 25)")
parser.add_argument("--lr", type=float, default=0.025, metavar="LR",
                    help="learning rate (default: 0.025)")
parser.add_argument("--momentum", type=float, default=0.9, metavar="M",
                    help="SGD momentum (default: 0.9)")
parser.add_argument("--no-cuda", action="store_true", default=False,
                    help="disables GPU training")
parser.add_argument("--seed", type=int, default=42, metavar="S",
                    help="random seed (default: 42)")
parser.add_argument("--log-interval", type=int, default=10, metavar="N",
                    help="how many batches to wait before logging training status")
parser.add_argument("--fp16-allreduce", action="store_true", default=False,
                    help="use fp16 compression during allreduce")
parser.add_argument("--gradient-predivide-factor", type=float, default=1.0,
                    help="apply gradient predivide factor in optimizer (default: 1.0)")


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5, padding=2)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(80, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 80)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def digits_dataset(train, mean=None, std=None):
    """The digits as (1, 8, 8) float32 images, normalised (by the training split's mean and std)."""
    digits = Digits(train=train)
    images = digits.data.reshape(-1, 1, 8, 8)
    if mean is None:
        mean, std = float(images.mean()), float(images.std())
    images = ((images - mean) / std).astype(np.float32)
    return TensorDataset(lucid.tensor(images), lucid.tensor(digits.targets)), mean, std


def train(args):
    def train_epoch(epoch):
        model.train()
        # Horovod: set epoch to sampler for shuffling.
        train_sampler.set_epoch(epoch)
        for batch_idx, (data, target) in enumerate(train_loader):
            if args.cuda:
                data, target = data.cuda(), target.cuda()
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            if batch_idx % args.log_interval == 0:
                # Horovod: use train_sampler to determine the number of examples in
                # this worker's partition.
                print("Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                    epoch, batch_idx * len(data), len(train_sampler),
                    100. * batch_idx / len(train_loader), loss.item()))

    def metric_average(val, name):
        tensor = lucid.tensor(val)
        avg_tensor = distributed.allreduce(tensor, name=name)
        return avg_tensor.item()

    @lucid.no_grad()
    def test():
        model.eval()
        test_loss = 0.
        test_accuracy = 0.
        for data, target in test_loader:
            if args.cuda:
                data, target = data.cuda(), target.cuda()
            output = model(data)
            # sum up batch loss
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            # get the index of the max log-probability
            pred = output.max(1, keepdim=True)[1]
            test_accuracy += pred.eq(target.view_as(pred)).cpu().float().sum()

        # Horovod: use test_sampler to determine the number of examples in
        # this worker's partition.
        test_loss /= len(test_sampler)
        test_accuracy /= len(test_sampler)

        # Horovod: average metric values across workers.
        test_loss = metric_average(test_loss, "avg_loss")
        test_accuracy = metric_average(test_accuracy, "avg_accuracy")

        # Horovod: print output only on first rank.
        if distributed.rank() == 0:
            print("\nTest set: Average loss: {:.4f}, Accuracy: {:.2f}%\n".format(
                test_loss, 100. * test_accuracy), flush=True)
        return test_accuracy

    # Horovod: initialize library.
    distributed.init()
    lucid.manual_seed(args.seed)

    train_dataset, mean, std = digits_dataset(train=True)
    # Horovod: use DistributedSampler to partition the training data.
    train_sampler = distributed.DistributedSampler(
        train_dataset, num_replicas=distributed.size(), rank=distributed.rank())
    train_loader = DataLoader(train_dataset, batch_size=args.batch_size, sampler=train_sampler)

    test_dataset, _, _ = digits_dataset(train=False, mean=mean, std=std)
    # Horovod: use DistributedSampler to partition the test data.
    test_sampler = distributed.DistributedSampler(
        test_dataset, num_replicas=distributed.size(), rank=distributed.rank())
    test_loader = DataLoader(test_dataset, batch_size=args.test_batch_size, sampler=test_sampler)

    model = Net()

    lr_scaler = distributed.size()

    if args.cuda:
        # Move model to GPU.
        model.cuda()

    # Horovod: scale learning rate by lr_scaler.
    optimizer = optim.SGD(model.parameters(), lr=args.lr * lr_scaler,
                          momentum=args.momentum)

    # Horovod: broadcast parameters & optimizer state.
    distributed.broadcast_parameters(model.state_dict(), root_rank=0)
    distributed.broadcast_optimizer_state(optimizer, root_rank=0)

    # Horovod: (optional) compression algorithm.
    compression = distributed.Compression.fp16 if args.fp16_allreduce else distributed.Compression.none

    # Horovod: wrap optimizer with DistributedOptimizer.
    optimizer = distributed.DistributedOptimizer(optimizer,
                                                 named_parameters=model.named_parameters(),
                                                 compression=compression,
                                                 op=distributed.Average,
                                                 gradient_predivide_factor=args.gradient_predivide_factor)

    accuracy = None
    for epoch in range(1, args.epochs + 1):
        train_epoch(epoch)
        accuracy = test()
    return accuracy


if __name__ == "__main__":
    args = parser.parse_args()
    args.cuda = not args.no_cuda and lucid.gpu_available()
    train(args)
