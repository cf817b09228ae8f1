"""Learning from reviewer decisions: kNN and ASIF precedent votes, the trained fusion head, evaluation.

Importing this package is light (numpy only); the names that need torch (`head_train`,
`TrainedHead`) import it on first use, so the web side can split and digest datasets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vlm_engine.learning.asif import PRECEDENT_ZERO_SHOT_SHARE, AsifClassifier, Precedent
from vlm_engine.learning.config import TrainingConfig
from vlm_engine.learning.dataset import (LabelledEmbeddings, dataset_digest, embeddings_pair, sentences_stack,
                                         split_by_key)
from vlm_engine.learning.knn import KnnClassifier
from vlm_engine.learning.metrics import metrics_evaluate

if TYPE_CHECKING:
    from vlm_engine.learning.fusion import TrainedHead
    from vlm_engine.learning.training import head_train

# Name -> module, for the names whose module imports torch.
_WITH_TORCH = {"TrainedHead": "vlm_engine.learning.fusion", "head_train": "vlm_engine.learning.training"}

__all__ = [
    "PRECEDENT_ZERO_SHOT_SHARE",
    "AsifClassifier",
    "KnnClassifier",
    "LabelledEmbeddings",
    "Precedent",
    "TrainedHead",
    "TrainingConfig",
    "dataset_digest",
    "embeddings_pair",
    "head_train",
    "metrics_evaluate",
    "sentences_stack",
    "split_by_key",
]


def __getattr__(name: str) -> Any:
    if name in _WITH_TORCH:
        return getattr(importlib.import_module(_WITH_TORCH[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
