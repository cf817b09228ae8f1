"""Hyper-parameters of a fusion-head training run (torch-free, so the web side can record them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    """How to train the fusion head; recorded in the saved head.

    `epochs` is an upper bound: training stops once the validation loss has not improved
    for `patience` epochs (0: never stop early) and keeps the best epoch's weights.
    """

    hidden: int = 256
    dropout: float = 0.1
    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0
    patience: int = 5

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("hidden, epochs and batch_size must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be within [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.weight_decay < 0 or self.patience < 0:
            raise ValueError("lr must be positive; weight_decay and patience must not be negative")
