"""lucid.datasets: small real data sets that ship with lucid and load offline."""

from .digits import Digits, load_digits

__all__ = ["Digits", "load_digits"]
