"""Hash banks: PDQ on posts, matches that decide without the models, lists in and out, reviewers' decisions."""
from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from moderation.models import Analysis, Bank, BankEntry, Post, PostEvent, PostState
from moderation.selectors.banks import entry_index
from moderation.services.analysis import post_claim_batch
from moderation.services.banks import (bank_create, bank_entry_add, bank_export, bank_import, bank_match_batch,
                                       post_pdq_record)
from moderation.errors import ServiceError
from moderation.services.reviews import review_decide, review_undo
from tests.factories import PostFactory, UserFactory
from vlm_engine.pdq import pdq_compute, pdq_distance

pytestmark = pytest.mark.django_db


def meme(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A textured image (random blocks, smoothed): PDQ quality 100, unlike a flat colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.BILINEAR)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def post_with(data: bytes, **fields: object) -> Post:
    post = PostFactory(**fields)
    post.image.save("x.jpg", ContentFile(data), save=True)
    return post


@pytest.fixture(autouse=True)
def _fresh_index():  # type: ignore[no-untyped-def]
    # Entry ids restart with each test's rolled-back transaction (SQLite) or not (PostgreSQL).
    entry_index.reset()
    yield
    entry_index.reset()


def claim_and_match(worker: str = "w") -> list[Post]:
    token, posts = post_claim_batch(limit=16, worker=worker)
    return bank_match_batch(token=token, posts=posts, worker=worker)


def test_a_reencoded_resized_copy_is_near_and_another_image_far():  # type: ignore[no-untyped-def]
    original = pdq_compute(jpeg(meme(1)))
    copy = pdq_compute(jpeg(meme(1).resize((120, 90)), quality=60))
    other = pdq_compute(jpeg(meme(2)))

    assert original.quality == 100
    assert pdq_distance(original.hex, copy.hex) <= 31 < pdq_distance(original.hex, other.hex)


def test_the_hex_form_puts_the_first_bit_first(monkeypatch):  # type: ignore[no-untyped-def]
    import pdqhash

    bits = np.zeros(256, dtype=np.int64)
    bits[0] = bits[255] = 1
    monkeypatch.setattr(pdqhash, "compute", lambda array: (bits, 77))

    assert pdq_compute(Image.new("RGB", (8, 8))).hex == "8" + "0" * 62 + "1"


def test_the_worker_hashes_images_before_the_models_and_skips_posts_without_one():  # type: ignore[no-untyped-def]
    post = post_with(jpeg(meme(3)))
    text_only = PostFactory()

    rest = claim_and_match()

    post.refresh_from_db()
    assert (post.pdq_hash, post.pdq_quality) == (pdq_compute(post.image.open("rb").read()).hex, 100)
    assert Post.objects.get(pk=text_only.pk).pdq_hash == ""
    assert {p.pk for p in rest} == {post.pk, text_only.pk}  # no bank: both go on to the models


def test_an_unreadable_image_is_left_for_the_engine_to_report():  # type: ignore[no-untyped-def]
    post = post_with(b"not an image")

    post_pdq_record(posts=[post])

    assert Post.objects.get(pk=post.pk).pdq_hash == ""


@pytest.mark.parametrize("action,state", [("remove", "removed"), ("review", "needs_review"), ("allow", "allowed")])
def test_a_match_decides_the_post_without_the_models(action, state):  # type: ignore[no-untyped-def]
    bank = bank_create(name="known", action=action)
    entry = bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(4))).hex, source="test")
    post = post_with(jpeg(meme(4).resize((140, 105)), quality=70))

    rest = claim_and_match()

    post.refresh_from_db()
    analysis = post.current_analysis
    match = analysis.explanation["bank_match"]
    assert rest == [] and post.state == state
    assert (analysis.decision, analysis.scoring, analysis.model_version) == (action, "bank", f"bank:{bank.pk}")
    assert match["bank"] == {"id": bank.pk, "name": "known", "action": action, "threshold": 31, "site": True}
    assert match["entry"]["id"] == entry.pk
    assert match["distance"] == pdq_distance(post.pdq_hash, entry.pdq_hash)
    assert f"entry {entry.pk} of the site bank \u201cknown\u201d at PDQ distance {match['distance']}" in \
        analysis.explanation["summary"]
    assert list(PostEvent.objects.filter(post=post).values_list("to_state", flat=True)) == ["analyzing", state]


def test_a_client_bank_applies_to_its_own_posts_only():  # type: ignore[no-untyped-def]
    acme, globex = UserFactory(username="acme"), UserFactory(username="globex")
    bank = bank_create(name="acme list", client=acme)
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(5))).hex)
    mine, theirs = post_with(jpeg(meme(5)), client=acme), post_with(jpeg(meme(5)), client=globex)

    rest = claim_and_match()

    assert [p.pk for p in rest] == [theirs.pk]
    assert Post.objects.get(pk=mine.pk).state == PostState.REMOVED


def test_threshold_disabled_entries_and_disabled_banks_do_not_match():  # type: ignore[no-untyped-def]
    bank = bank_create(name="tight", threshold=0)
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(6))).hex)
    off = bank_create(name="off", enabled=False)
    bank_entry_add(bank=off, pdq_hash=pdq_compute(jpeg(meme(6))).hex)
    post = post_with(jpeg(meme(6).resize((120, 90)), quality=50))

    rest = claim_and_match()

    assert pdq_distance(Post.objects.get(pk=post.pk).pdq_hash, bank.entries.get().pdq_hash) > 0
    assert [p.pk for p in rest] == [post.pk]


def test_a_new_entry_matches_in_the_next_batch():  # type: ignore[no-untyped-def]
    bank = bank_create(name="late")
    post_with(jpeg(meme(7)))
    assert len(claim_and_match()) == 1  # nothing banked yet: the index is built, without this hash
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(7))).hex)
    later = post_with(jpeg(meme(7)))

    assert claim_and_match() == []
    assert Post.objects.get(pk=later.pk).state == PostState.REMOVED


def test_an_allow_match_keeps_a_known_benign_image_out_of_review():  # type: ignore[no-untyped-def]
    bank = bank_create(name="benign viral", action="allow")
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(8))).hex)
    post = post_with(jpeg(meme(8)))

    claim_and_match()

    assert Post.objects.get(pk=post.pk).state == PostState.ALLOWED
    assert Analysis.objects.get(post=post).risk == 0.0


@pytest.mark.parametrize("value", ["abc", "g" * 64, "0" * 63, "0" * 65, 42])
def test_a_hash_of_the_wrong_length_or_alphabet_is_refused(value):  # type: ignore[no-untyped-def]
    bank = bank_create(name="b")

    with pytest.raises(ServiceError) as refused:
        bank_entry_add(bank=bank, pdq_hash=value)

    assert refused.value.code == "hash_invalid"
    assert BankEntry.objects.count() == 0


H1, H2, H3 = "a" * 64, "0123456789abcdef" * 4, "f" * 63 + "e"


def test_import_reads_signal_files_and_dataset_csv():  # type: ignore[no-untyped-def]
    bank = bank_create(name="imported")
    signal_file = f"# a comment\npdq {H1}\n\n{H2.upper()} 'collab' tags\n"
    dataset_csv = f"signal_type,signal_str,collab,category,tags\npdq,{H3},c,POSITIVE_CLASS,meme viral\npdq,{H1},c,,\n"

    first = bank_import(bank=bank, text=signal_file, source="import:a")
    second = bank_import(bank=bank, text=dataset_csv, source="import:b")

    assert (first.added, first.already_present, second.added, second.already_present) == (2, 0, 1, 1)
    assert dict(bank.entries.values_list("pdq_hash", "note")) == {H1: "", H2: "'collab' tags", H3: "meme viral"}


def test_a_malformed_list_is_refused_line_by_line_and_nothing_is_imported():  # type: ignore[no-untyped-def]
    bank = bank_create(name="strict")
    text = f"pdq {H1}\nmd5 d41d8cd98f00b204e9800998ecf8427e\npdq 1234\n{H2}\nnot-a-hash\n"

    with pytest.raises(ServiceError) as refused:
        bank_import(bank=bank, text=text, source="import")

    assert refused.value.code == "hash_list_invalid"
    assert [d["line"] for d in refused.value.details] == [2, 3, 5]
    assert refused.value.details[0]["message"] == "signal type 'md5' is not pdq"
    assert bank.entries.count() == 0


def test_export_writes_what_import_reads():  # type: ignore[no-untyped-def]
    bank = bank_create(name="out", action="allow")
    for h in (H1, H2):
        bank_entry_add(bank=bank, pdq_hash=h)
    BankEntry.objects.filter(pdq_hash=H2).update(enabled=False)

    assert bank_export(bank=bank, fmt="te") == f"pdq {H1}\n"
    assert bank_export(bank=bank, fmt="csv") == (
        f"signal_type,signal_str,collab,category,tags\npdq,{H1},out,NEGATIVE_CLASS,\n")
    copy = bank_create(name="copy")
    assert bank_import(bank=copy, text=bank_export(bank=bank, fmt="csv"), source="x").added == 1


@pytest.fixture
def reviewer(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username="rita", password="x", is_staff=True)


def reviewed_post(data: bytes, client: object) -> Post:
    post = post_with(data, client=client)
    post_pdq_record(posts=[post])
    Post.objects.filter(pk=post.pk).update(state=PostState.NEEDS_REVIEW)
    return Post.objects.get(pk=post.pk)


def test_a_violating_decision_removes_reuploads_naming_the_decision(reviewer):  # type: ignore[no-untyped-def]
    acme = UserFactory(username="acme")
    first = reviewed_post(jpeg(meme(9)), acme)
    decision = review_decide(post=first, reviewer=reviewer, verdict="violating", category="hate", reason="slur")
    reupload = post_with(jpeg(meme(9).resize((150, 112)), quality=75), client=acme)

    claim_and_match()

    reupload.refresh_from_db()
    bank = Bank.objects.get(client=acme, purpose="reviewed_violating")
    explanation = reupload.current_analysis.explanation
    assert (bank.action, reupload.state, reupload.current_analysis.top_category) == ("remove", "removed", "hate")
    assert explanation["bank_match"]["review_decision"]["id"] == decision.pk
    assert f"\u201cviolating\u201d decision {decision.pk} (hate) on post {first.pk}" in explanation["summary"]


def test_a_not_violating_decision_allows_reuploads_and_an_undo_takes_it_back(reviewer):  # type: ignore[no-untyped-def]
    acme = UserFactory(username="acme")
    first = reviewed_post(jpeg(meme(10)), acme)
    decision = review_decide(post=first, reviewer=reviewer, verdict="not_violating")
    entry = BankEntry.objects.get(bank__purpose="reviewed_allowed", bank__client=acme)
    assert (entry.pdq_hash, entry.review_decision_id, entry.bank.action) == (first.pdq_hash, decision.pk, "allow")

    review_undo(reviewer=reviewer)
    again = post_with(jpeg(meme(10)), client=acme)

    assert BankEntry.objects.count() == 0
    assert [p.pk for p in claim_and_match()] == [again.pk]


def test_propagation_can_be_turned_off(reviewer, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "BANK_REVIEWED_VIOLATING": False}
    post = reviewed_post(jpeg(meme(11)), UserFactory(username="acme"))

    review_decide(post=post, reviewer=reviewer, verdict="violating", category="hate", reason="slur")

    assert BankEntry.objects.count() == 0


def test_a_match_for_a_post_no_longer_claimed_changes_nothing():  # type: ignore[no-untyped-def]
    bank = bank_create(name="known")
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(12))).hex)
    post = post_with(jpeg(meme(12)))
    token, posts = post_claim_batch(limit=4, worker="w")
    Post.objects.filter(pk=post.pk).update(claim_token=uuid.uuid4())  # the sweeper gave it to another worker

    bank_match_batch(token=token, posts=posts, worker="w")

    assert Analysis.objects.count() == 0
    assert Post.objects.get(pk=post.pk).state == PostState.ANALYZING


@pytest.mark.parametrize("override", [{"BANK_MIN_QUALITY": 101}, {"BANK_MIN_QUALITY": "50"},
                                      {"BANK_REVIEWED_ALLOWED": "yes"}])
def test_bank_settings_are_checked(override):  # type: ignore[no-untyped-def]
    from django.test import override_settings

    from tests.moderation.test_conf import check_ids

    with override_settings(MODERATION=override):
        assert check_ids() == ["moderation.E014"]


def test_an_entry_committed_after_a_later_id_is_still_found():  # type: ignore[no-untyped-def]
    bank = bank_create(name="b")
    first = bank_entry_add(bank=bank, pdq_hash=H1)
    assert [pk for pk, _ in entry_index.candidates(H1, threshold=0)] == [first.pk]
    skipped_pk = first.pk + 1
    BankEntry.objects.create(pk=first.pk + 2, bank=bank, pdq_hash=H2)
    assert [pk for pk, _ in entry_index.candidates(H2, threshold=0)] == [first.pk + 2]

    BankEntry.objects.create(pk=skipped_pk, bank=bank, pdq_hash=H3)  # its transaction committed last

    assert entry_index.candidates(H3, threshold=0) == [(skipped_pk, 0)]


def test_near_duplicates_are_the_clients_own_within_the_distance_nearest_first():  # type: ignore[no-untyped-def]
    from moderation.selectors.banks import post_near_duplicates
    from tests.factories import AnalysisFactory

    acme, globex = UserFactory(username="acme"), UserFactory(username="globex")
    original = post_with(jpeg(meme(30)), client=acme)
    resized = post_with(jpeg(meme(30).resize((130, 97)), quality=60), client=acme)
    same = post_with(jpeg(meme(30)), client=acme)
    posts = [original, resized, same, post_with(jpeg(meme(31)), client=acme), post_with(jpeg(meme(30)), client=globex)]
    post_pdq_record(posts=posts)
    for post, vector in ((original, [1.0, 0.0]), (same, [0.6, 0.8])):
        post.current_analysis = AnalysisFactory(post=post, decision="remove",
                                                image_embedding=np.asarray(vector, dtype="<f4").tobytes())
        post.save()

    near = post_near_duplicates(post=original)

    assert [(n.post.pk, n.distance) for n in near] == [
        (same.pk, 0), (resized.pk, pdq_distance(original.pdq_hash, resized.pdq_hash))]
    assert [(n.similarity, n.decision) for n in near] == [(0.6, "remove"), (None, "")]
