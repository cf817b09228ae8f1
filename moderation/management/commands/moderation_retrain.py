"""``manage.py moderation_retrain``: train a candidate head from reviewer decisions now."""
from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from moderation.services.errors import ServiceError
from moderation.services.learning import model_train

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Train a fusion head on the labelled set, evaluate it on the held-out split, store a candidate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, seed: int, **options: Any) -> None:
        try:
            version = model_train(seed=seed, progress=self._progress)
        except ServiceError as exc:
            raise CommandError(exc.message)
        self.stderr.write("")
        macro = version.metrics.get("macro", {})
        baseline = version.baseline_metrics
        self.stdout.write(f"Candidate v{version.version}: held-out macro AUROC {macro.get('auroc')}, "
                          f"F1 at review thresholds {macro.get('review', {}).get('f1')}, ECE {macro.get('ece')}; "
                          f"baseline ({baseline.get('source')}) AUROC {baseline.get('macro', {}).get('auroc')}.")

    def _progress(self, epoch: int, epochs: int, loss: float) -> None:
        done = int(BAR_WIDTH * epoch / max(epochs, 1))
        sys.stderr.write(f"\r[{'#' * done}{'.' * (BAR_WIDTH - done)}] epoch {epoch}/{epochs} loss {loss:.4f}")
        sys.stderr.flush()
