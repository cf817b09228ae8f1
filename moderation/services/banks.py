"""Hash banks: known content matched by PDQ before any model runs, and filled by reviewers' decisions."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from django.db import IntegrityError, transaction
from PIL import Image

from moderation.conf import moderation_settings
from moderation.models import Analysis, Bank, BankEntry, Decision, Policy, Post, ReviewDecision
from moderation.selectors.banks import BankMatch, bank_match
from moderation.services.analysis import analysis_record_known
from moderation.services.bank_lists import FORMATS, hash_list_parse, hash_list_write
from moderation.errors import ServiceError
from moderation.services.policies import policy_active
from vlm_engine.pdq import PDQ_BITS, PdqHashInvalid, pdq_compute, pdq_hex_parse

DECISION_WORDS = {Decision.ALLOW: "allowed", Decision.REVIEW: "sent to review", Decision.REMOVE: "removed"}
PURPOSE_BANKS = {
    ReviewDecision.Verdict.VIOLATING: (Bank.Purpose.REVIEWED_VIOLATING, "Reviewed: violating", Decision.REMOVE),
    ReviewDecision.Verdict.NOT_VIOLATING: (Bank.Purpose.REVIEWED_ALLOWED, "Reviewed: not violating", Decision.ALLOW),
}
# What Pillow raises on an image it cannot read; the engine then reports the error on the post.
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def bank_hash_parse(value: Any) -> str:
    """A PDQ hash in canonical form, or ``hash_invalid``."""
    try:
        return pdq_hex_parse(value if isinstance(value, str) else "")
    except PdqHashInvalid:
        raise ServiceError("hash_invalid", "A PDQ hash is 64 hexadecimal digits (0-9, a-f).")


def post_pdq_record(*, posts: Sequence[Post]) -> None:
    """Hash each post's stored image (posts without an image, or already hashed, are left alone)."""
    for post in posts:
        if not post.image or post.pdq_hash:
            continue
        try:
            with post.image.open("rb") as handle:
                computed = pdq_compute(handle.read())
        except _UNREADABLE:
            continue
        Post.objects.filter(pk=post.pk).update(pdq_hash=computed.hex, pdq_quality=computed.quality)
        post.pdq_hash, post.pdq_quality = computed.hex, computed.quality


def bank_match_batch(*, token: uuid.UUID, posts: Sequence[Post], worker: str) -> list[Post]:
    """Hash a claimed batch and decide the posts whose hash matches a bank; returns the others,
    which go on to the models. Hashes below ``BANK_MIN_QUALITY`` (flat images) never match."""
    post_pdq_record(posts=posts)
    matched: list[tuple[Post, BankMatch]] = []
    for post in posts:
        if post.pdq_hash and (post.pdq_quality or 0) >= moderation_settings.BANK_MIN_QUALITY:
            match = bank_match(client_id=post.client_id, pdq_hash=post.pdq_hash)
            if match is not None:
                matched.append((post, match))
    if matched:
        bank_match_conclude(token=token, matches=matched, worker=worker)
    decided = {post.pk for post, _ in matched}
    return [post for post in posts if post.pk not in decided]


def bank_match_conclude(*, token: uuid.UUID, matches: Sequence[tuple[Post, BankMatch]],
                        worker: str) -> list[Analysis]:
    """The one place a bank match changes a post's state: an analysis made of the match, concluded
    along the engine's own path (``analysis_record_known``), with its events and webhooks."""
    policy = policy_active()
    analyses = [_match_analysis(post=post, match=match, token=token, policy=policy) for post, match in matches]
    return analysis_record_known(token=token, policy=policy, analyses=analyses, worker=worker)


def _match_analysis(*, post: Post, match: BankMatch, token: uuid.UUID, policy: Policy) -> Analysis:
    bank = match.entry.bank
    decision = match.entry.review_decision
    return Analysis(post=post, claim_token=token, policy=policy, model_version=f"bank:{bank.pk}",
                    scoring="bank", scores={}, decision=bank.action,
                    top_category=decision.category if decision else "",
                    risk=0.0 if bank.action == Decision.ALLOW else 1.0,
                    explanation=bank_match_explanation(post=post, match=match, policy=policy), timings_ms={})


def bank_match_explanation(*, post: Post, match: BankMatch, policy: Policy) -> dict[str, Any]:
    """The explanation of a decision by a bank match: bank, entry, distance and, for an entry a
    reviewer's decision made, that decision."""
    entry, bank = match.entry, match.entry.bank
    original = entry.review_decision
    summary = (f"The post was {DECISION_WORDS[Decision(bank.action)]}: its image matches entry {entry.pk} of the "
               f"{'site' if bank.client_id is None else 'client'} bank \u201c{bank.name}\u201d at PDQ distance "
               f"{match.distance} (threshold {bank.threshold}); no model was run.")
    if original is not None:
        verdict = original.verdict.replace("_", " ")
        summary += (f" The entry was added by a reviewer's \u201c{verdict}\u201d decision "
                    f"{original.pk}{f' ({original.category})' if original.category else ''} on post "
                    f"{original.post_id}.")
    return {"policy_version": policy.version, "scores": [], "groundings": [], "answers": [], "caption": None,
            "ocr_text": None, "rationale": None, "nearest_examples": [], "summary": summary,
            "bank_match": {
                "bank": {"id": bank.pk, "name": bank.name, "action": bank.action, "threshold": bank.threshold,
                         "site": bank.client_id is None},
                "entry": {"id": entry.pk, "source": entry.source, "added_at": entry.added_at.isoformat()},
                "distance": match.distance, "pdq_hash": post.pdq_hash,
                "review_decision": None if original is None else {
                    "id": original.pk, "verdict": original.verdict, "category": original.category,
                    "post_id": str(original.post_id), "decided_at": original.created_at.isoformat()},
            }}


def bank_create(*, name: str, client: Any = None, action: str = Decision.REMOVE,
                threshold: int = 31, enabled: bool = True, description: str = "") -> Bank:
    """A new bank (``client=None``: a site bank)."""
    bank = Bank(name=name.strip(), client=client, action=action, threshold=threshold, enabled=enabled,
                description=description)
    _bank_check(bank)
    try:
        with transaction.atomic():
            bank.save()
    except IntegrityError:
        raise ServiceError("bank_name_taken", f"A bank named {bank.name!r} exists already.", status=409)
    return bank


def bank_update(*, bank: Bank, **fields: Any) -> Bank:
    """Change a bank's name, action, threshold, enabled flag or description."""
    for name, value in fields.items():
        setattr(bank, name, value.strip() if name == "name" else value)
    _bank_check(bank)
    try:
        with transaction.atomic():
            bank.save(update_fields=list(fields))
    except IntegrityError:
        raise ServiceError("bank_name_taken", f"A bank named {bank.name!r} exists already.", status=409)
    return bank


def _bank_check(bank: Bank) -> None:
    if not bank.name or len(bank.name) > 100:
        raise ServiceError("bank_invalid", "A bank's name is 1 to 100 characters.")
    if bank.action not in Decision.values:
        raise ServiceError("bank_invalid", f"action must be one of {', '.join(Decision.values)}.")
    if not isinstance(bank.threshold, int) or not 0 <= bank.threshold <= PDQ_BITS:
        raise ServiceError("bank_invalid", f"threshold must be an integer from 0 to {PDQ_BITS}.")


def bank_delete(*, bank: Bank) -> None:
    bank.delete()


def bank_entry_add(*, bank: Bank, pdq_hash: Any, note: str = "", source: str = "",
                   added_by: Any = None) -> BankEntry:
    """One hash into a bank; it matches from the next batch on."""
    entry = BankEntry(bank=bank, pdq_hash=bank_hash_parse(pdq_hash), note=note, source=source[:255],
                      added_by=added_by)
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        raise ServiceError("entry_exists", "The bank holds this hash already.", status=409)
    return entry


def bank_entry_remove(*, entry: BankEntry) -> None:
    entry.delete()


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_present: int


@transaction.atomic
def bank_import(*, bank: Bank, text: str, source: str, added_by: Any = None) -> ImportResult:
    """Add every hash of a list (see ``bank_lists``) in one transaction; a list with any malformed
    line is refused whole, with every bad line's number and reason (``hash_list_invalid``)."""
    listed, errors = hash_list_parse(text)
    if errors:
        raise ServiceError("hash_list_invalid", f"{len(errors)} line(s) of the list are not PDQ hashes; "
                           "nothing was imported.",
                           details=[{"line": e.line, "message": e.message} for e in errors])
    present = set(bank.entries.values_list("pdq_hash", flat=True))
    new: dict[str, str] = {}
    for item in listed:
        if item.pdq_hash not in present:
            new.setdefault(item.pdq_hash, item.note)
    BankEntry.objects.bulk_create(BankEntry(bank=bank, pdq_hash=h, note=note, source=source[:255], added_by=added_by)
                                  for h, note in new.items())
    return ImportResult(added=len(new), already_present=len(listed) - len(new))


def bank_export(*, bank: Bank, fmt: str) -> str:
    """The bank's enabled hashes as a list HMA and ThreatExchange's tools read (``te`` or ``csv``)."""
    if fmt not in FORMATS:
        raise ServiceError("format_invalid", f"format must be one of {', '.join(FORMATS)}.")
    hashes = bank.entries.filter(enabled=True).order_by("id").values_list("pdq_hash", flat=True)
    return hash_list_write(hashes=hashes, fmt=fmt, collab=bank.name, benign=bank.action == Decision.ALLOW)


def bank_review_decision_record(*, decision: ReviewDecision) -> BankEntry | None:
    """A reviewer's violating / not-violating decision puts the post's hash into the client's
    reviewed bank of that kind (and takes it out of the other one: the latest decision stands)."""
    if decision.verdict not in PURPOSE_BANKS or not _bank_on(decision.verdict):
        return None
    post = decision.post
    if not post.pdq_hash or (post.pdq_quality or 0) < moderation_settings.BANK_MIN_QUALITY:
        return None
    purpose, name, action = PURPOSE_BANKS[ReviewDecision.Verdict(decision.verdict)]
    bank = _purpose_bank(client_id=post.client_id, purpose=purpose, name=name, action=action)
    BankEntry.objects.filter(bank__client_id=post.client_id, pdq_hash=post.pdq_hash,
                             bank__purpose__in=[p for p, _, _ in PURPOSE_BANKS.values() if p != purpose]).delete()
    entry, _ = BankEntry.objects.update_or_create(
        bank=bank, pdq_hash=post.pdq_hash,
        defaults={"review_decision": decision, "source": f"review:{decision.pk}", "enabled": True,
                  "note": f"post {post.pk}", "added_by": decision.reviewer})
    return entry


def _bank_on(verdict: str) -> bool:
    if verdict == ReviewDecision.Verdict.VIOLATING:
        return bool(moderation_settings.BANK_REVIEWED_VIOLATING)
    return bool(moderation_settings.BANK_REVIEWED_ALLOWED)


def _purpose_bank(*, client_id: Any, purpose: str, name: str, action: str) -> Bank:
    bank = Bank.objects.filter(client_id=client_id, purpose=purpose).first()
    if bank is None:
        bank = Bank.objects.create(client_id=client_id, purpose=purpose, name=name, action=action,
                                   description="Filled by reviewers' decisions on this client's posts.")
    return bank


def bank_review_decision_undo(*, undone: ReviewDecision) -> int:
    """An undone decision takes back the entry it made (not one a later decision has taken over)."""
    deleted, _ = BankEntry.objects.filter(review_decision=undone).delete()
    return deleted
