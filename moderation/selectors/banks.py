"""Selectors of hash banks: a client's banks, which bank entry a post's PDQ hash matches, its near-duplicates."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from numpy.typing import NDArray

from moderation.conf import moderation_settings
from moderation.models import Bank, BankEntry, Decision, Post
from moderation.errors import NotFound
from vlm_engine.pdq import PDQ_BITS
from vlm_engine.pdq_index import PdqIndex, hamming_distances, hashes_from_hex

GAP_RECHECK_SECONDS = 3600
GAP_WINDOW = 10_000
# When two entries match at the same distance, the stricter action wins.
ACTION_RANK = {Decision.REMOVE: 0, Decision.REVIEW: 1, Decision.ALLOW: 2}


def bank_list(*, client: AbstractBaseUser) -> QuerySet[Bank]:
    """The client's own banks (site banks are managed in the admin and not listed here)."""
    return Bank.objects.filter(client=client).order_by("name", "id")


def bank_get(*, client: AbstractBaseUser, bank_id: int | str) -> Bank:
    """One of the client's banks; another client's bank, or a site bank, is simply not found."""
    try:
        return bank_list(client=client).get(pk=int(bank_id))
    except (Bank.DoesNotExist, ValueError):
        raise NotFound("not_found", "No such bank.")


def bank_entry_get(*, bank: Bank, entry_id: int | str) -> BankEntry:
    try:
        return bank.entries.get(pk=int(entry_id))
    except (BankEntry.DoesNotExist, ValueError):
        raise NotFound("not_found", "No such bank entry.")


@dataclass(frozen=True)
class BankMatch:
    """The entry a hash matched, the bank it is in, and how many bits apart they are."""

    entry: BankEntry
    distance: int


class _EntryIndex:
    """Every bank entry's hash in one in-process multi-index (``vlm_engine.pdq_index``).

    Entries are only ever appended to the index: each lookup first adds entries created since
    the last one (so a new entry matches in the very next batch, with no rebuild to wait for),
    and every candidate is checked against the database (entry and bank enabled, bank applies
    to the client, distance within the bank's threshold), so a removed or disabled entry, or a
    changed threshold, counts at once too.
    """

    def __init__(self) -> None:
        self._index = PdqIndex()
        self._last_id = 0
        # Ids skipped over: an entry whose transaction commits after a later one's (sequence
        # order is not commit order) shows up later with a lower id. Looked for again at each
        # catch-up for GAP_RECHECK_SECONDS (rolled-back and deleted ids never show up).
        self._gaps: dict[int, float] = {}
        self._lock = threading.Lock()

    def candidates(self, pdq_hash: str, *, threshold: int) -> list[tuple[int, int]]:
        with self._lock:
            self._catch_up()
            query = hashes_from_hex([pdq_hash])[0]
            return [(m.id, m.distance) for m in self._index.search(query, threshold=threshold)]

    def _catch_up(self) -> None:
        now = time.monotonic()
        self._gaps = {pk: seen for pk, seen in self._gaps.items() if now - seen < GAP_RECHECK_SECONDS}
        late = Q(pk__in=list(self._gaps)) if self._gaps else Q(pk__in=[])
        new = list(BankEntry.objects.filter(late | Q(pk__gt=self._last_id)).order_by("pk")
                   .values_list("pk", "pdq_hash"))
        if not new:
            return
        self._index.add(hashes_from_hex([h for _, h in new]), np.asarray([pk for pk, _ in new], dtype=np.int64))
        found = {pk for pk, _ in new}
        for pk in found & set(self._gaps):
            del self._gaps[pk]
        newest = max(found)
        if newest > self._last_id:
            # Only ids near the top can belong to transactions still open (a first load, or a jump
            # of the sequence after deletions, would otherwise track millions of dead ids).
            low = max(self._last_id + 1, newest - GAP_WINDOW) if self._last_id else newest
            self._gaps.update((pk, now) for pk in range(low, newest) if pk not in found)
            self._last_id = newest

    def reset(self) -> None:
        with self._lock:
            self._index, self._last_id, self._gaps = PdqIndex(), 0, {}


entry_index = _EntryIndex()


def bank_match(*, client_id: Any, pdq_hash: str) -> BankMatch | None:
    """The nearest enabled entry, in an enabled site bank or one of the client's, within its bank's
    threshold; ties go to the stricter action."""
    limit = _largest_threshold(client_id)
    if limit is None:
        return None
    found = dict(entry_index.candidates(pdq_hash, threshold=limit))
    if not found:
        return None
    entries = (BankEntry.objects.select_related("bank", "review_decision")
               .filter(_applies_to(client_id), pk__in=list(found), enabled=True))
    matches = [BankMatch(entry=e, distance=found[e.pk]) for e in entries if found[e.pk] <= e.bank.threshold]
    if not matches:
        return None
    return min(matches, key=lambda m: (m.distance, ACTION_RANK[Decision(m.entry.bank.action)], m.entry.pk))


def _applies_to(client_id: Any) -> Q:
    return Q(bank__enabled=True) & (Q(bank__client__isnull=True) | Q(bank__client_id=client_id))


def _largest_threshold(client_id: Any) -> int | None:
    thresholds = Bank.objects.filter(Q(client__isnull=True) | Q(client_id=client_id), enabled=True).values_list(
        "threshold", flat=True)
    return min(max(thresholds), PDQ_BITS) if thresholds else None


@dataclass(frozen=True)
class NearDuplicate:
    """Another post of the same client whose image is within the PDQ distance, with where it stands."""

    post: Post
    distance: int
    similarity: float | None  # cosine of the image embeddings, when both posts have one from a real embedder
    decision: str  # the current analysis' decision, "" before any


def post_near_duplicates(*, post: Post, threshold: int | None = None, limit: int = 50) -> list[NearDuplicate]:
    """The client's other posts whose PDQ hash is within ``threshold`` (``REVIEW_CLUSTER_DISTANCE``)
    of this one's, nearest first (ties in id order). Hashes below ``BANK_MIN_QUALITY`` (flat images,
    which all look alike to PDQ) have no near-duplicates.

    A scan of the client's hashed posts (32 bytes each: about 30 ms per million on one core),
    enough for a reviewer's page; the banks' index serves the worker's lookups.
    """
    threshold = moderation_settings.REVIEW_CLUSTER_DISTANCE if threshold is None else threshold
    quality = moderation_settings.BANK_MIN_QUALITY
    if not post.pdq_hash or (post.pdq_quality or 0) < quality:
        return []
    others = list(Post.objects.filter(client_id=post.client_id, pdq_quality__gte=quality).exclude(pk=post.pk)
                  .exclude(pdq_hash="").values_list("pk", "pdq_hash"))
    if not others:
        return []
    distances = hamming_distances(hashes_from_hex([h for _, h in others]), hashes_from_hex([post.pdq_hash])[0])
    near = sorted((int(d), others[i][0]) for i, d in enumerate(distances.tolist()) if d <= threshold)[:limit]
    found = Post.objects.select_related("current_analysis", "review_claimed_by").in_bulk([pk for _, pk in near])
    mine = _embedding(post)
    return [_near_duplicate(found[pk], distance=d, embedding=mine) for d, pk in near]


def _near_duplicate(other: Post, *, distance: int, embedding: NDArray[np.float32] | None) -> NearDuplicate:
    analysis = other.current_analysis
    return NearDuplicate(post=other, distance=distance, similarity=_cosine(embedding, _embedding(other)),
                         decision=analysis.decision if analysis else "")


def _embedding(post: Post) -> NDArray[np.float32] | None:
    """The post's image embedding; None without one, or when the embedder ran on random weights
    (a similarity of noise is withheld, like the rest of that role's output)."""
    analysis = post.current_analysis
    if analysis is None or not analysis.image_embedding:
        return None
    if "embedder" in ((analysis.explanation or {}).get("roles") or {}).get("no_checkpoint", []):
        return None
    return np.frombuffer(bytes(analysis.image_embedding), dtype="<f4")


def _cosine(a: NDArray[np.float32] | None, b: NDArray[np.float32] | None) -> float | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return round(float(a @ b) / norm, 6) if norm else None
