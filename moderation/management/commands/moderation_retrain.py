"""``manage.py moderation_retrain``: train a candidate head from reviewer decisions now."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse

from moderation.conf import moderation_settings
from moderation.models import ModelVersion
from moderation.errors import ServiceError
from moderation.services.learning import (MIN_TRUSTED_CLASS, MIN_TRUSTED_SPLIT, DatasetSplits,
                                          aurocs_trusted, model_train, splits_untrusted)

BAR_WIDTH = 30
LABEL_WIDTH = 14
# What a split that is too small undermines.
UNTRUSTED_BECAUSE = {"validation": "early stopping and calibration rest on a handful of posts",
                     "test": "its figures mean nothing, so none is shown"}


def figure(value: Any) -> str:
    """A metric rounded to three decimals; "n/a" where it is undefined."""
    return "n/a" if value is None else f"{float(value):.3f}"


class Command(BaseCommand):
    help = "Train a fusion head on the labelled set, evaluate it on the held-out split, store a candidate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--site-url", default=None,
                            help="Base URL of the site for the admin link (default: MODERATION['SITE_URL']).")

    def handle(self, *args: Any, seed: int, site_url: str | None, **options: Any) -> None:
        base = _site_url(moderation_settings.SITE_URL if site_url is None else site_url)
        self._bar_open = False
        try:
            version = model_train(seed=seed, progress=self._progress, on_dataset=self._dataset)
        except ServiceError as exc:
            raise CommandError(exc.message)
        self._bar_close()
        for line in _report(version) + [f"Next: promote it in the admin: {_change_url(version, base)}"]:
            self.stdout.write(line)

    def _dataset(self, splits: DatasetSplits) -> None:
        sizes = splits.sizes
        self.stdout.write(f"Labelled posts: {sum(sizes.values())} "
                          f"(train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']})")
        self.stdout.write(f"{'label':<{LABEL_WIDTH}} {'train':>6} {'validation':>10} {'test':>6}")
        for label, counts in splits.labels.items():
            self.stdout.write(f"{label:<{LABEL_WIDTH}} {counts['train']:>6} {counts['validation']:>10} "
                              f"{counts['test']:>6}")
        for split in splits_untrusted(sizes=sizes):
            self.stdout.write(f"Warning: the {split} split has {sizes[split]} posts (fewer than "
                              f"{MIN_TRUSTED_SPLIT}); {UNTRUSTED_BECAUSE[split]}. Label more posts.",
                              self.style.WARNING if self.stdout.isatty() else None)

    def _progress(self, epoch: int, epochs: int, loss: float) -> None:
        text = f"epoch {epoch}/{epochs} loss {loss:.3f}"
        if not self.stdout.isatty():
            self.stdout.write(text)
            return
        done = int(BAR_WIDTH * epoch / max(epochs, 1))
        self.stdout.write(f"\r[{'#' * done}{'.' * (BAR_WIDTH - done)}] {text}", ending="")
        self.stdout.flush()
        self._bar_open = True

    def _bar_close(self) -> None:
        if self._bar_open:
            self.stdout.write("")
            self._bar_open = False


def _report(version: ModelVersion) -> list[str]:
    """The candidate's held-out figures beside the baseline's; none when the test split is too small."""
    test_size = version.dataset_sizes.get("test", 0)
    lines = [f"Candidate v{version.version} stored."]
    if "test" in splits_untrusted(sizes=version.dataset_sizes):
        return lines + [f"Held-out figures withheld: the test split has {test_size} posts."]
    baseline = version.baseline_metrics
    lines.append(f"Held-out test split, {test_size} posts: candidate | baseline ({baseline.get('source')})")
    trusted = aurocs_trusted(metrics=version.metrics)
    rows = [("macro", version.metrics.get("macro", {}))] + list(version.metrics.get("categories", {}).items())
    for label, metrics in rows:
        base = baseline.get(label, {}) if label == "macro" else baseline.get("categories", {}).get(label, {})
        lines.append(_metrics_line(label, metrics, base, trusted=trusted[label]))
    return lines


def _metrics_line(label: str, metrics: dict[str, Any], base: dict[str, Any], *, trusted: bool) -> str:
    if trusted:
        auroc = f"AUROC {figure(metrics.get('auroc'))} | {figure(base.get('auroc'))}"
    elif label == "macro":
        auroc = "AUROC n/a (it would average categories too small to trust)"
    else:
        auroc = f"AUROC n/a ({metrics.get('support', 0)} of {metrics.get('n', 0)} violating; "\
                f"{MIN_TRUSTED_CLASS} of each class needed)"
    f1 = f"F1 {figure((metrics.get('review') or {}).get('f1'))} | {figure((base.get('review') or {}).get('f1'))}"
    ece = f"ECE {figure(metrics.get('ece'))} | {figure(base.get('ece'))}"
    return f"  {label:<{LABEL_WIDTH}} {auroc}  {f1}  {ece}"


def _site_url(value: str) -> str:
    """The base URL without a trailing slash ("" when unknown).

    Raises:
        CommandError: not an http(s) URL.
    """
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise CommandError(f"the site URL (--site-url or MODERATION['SITE_URL']) must look like "
                           f"https://moderation.example.com, not {value!r}")
    return value.rstrip("/")


def _change_url(version: ModelVersion, base: str) -> str:
    try:
        path = reverse("admin:moderation_modelversion_change", args=[version.pk])
    except NoReverseMatch:
        return f"Model versions, v{version.version} (this site's URLconf has no admin)"
    return f"{base}{path}"
