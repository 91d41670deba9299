"""lucid.data: datasets, samplers and the DataLoader, with torch.utils.data's names."""

from .dataloader import DataLoader, default_collate
from .dataset import Dataset, Subset, TensorDataset, random_split
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["BatchSampler", "DataLoader", "Dataset", "RandomSampler", "Sampler", "SequentialSampler",
           "Subset", "TensorDataset", "default_collate", "random_split"]
