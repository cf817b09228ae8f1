"""The banks API: a client's own banks only, hashes validated, lists imported whole or not at all."""
from __future__ import annotations

import pytest

from moderation.models import Bank, BankEntry
from moderation.services.banks import bank_create, bank_entry_add
from tests.conftest import _api_client_for
from tests.factories import PostFactory

pytestmark = pytest.mark.django_db

BANKS = "/api/v1/banks/"
H1, H2 = "a" * 64, "0123456789abcdef" * 4


def test_a_client_creates_and_lists_its_banks(api, client_user):  # type: ignore[no-untyped-def]
    created = api.post(BANKS, {"name": "memes", "action": "review", "threshold": 20}, format="json")
    bank_create(name="site list")  # site banks are not the client's to see

    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in ("name", "action", "threshold", "enabled", "purpose", "entries")} == {
        "name": "memes", "action": "review", "threshold": 20, "enabled": True, "purpose": "", "entries": 0}
    assert [b["name"] for b in api.get(BANKS).json()] == ["memes"]
    assert Bank.objects.get(name="memes").client == client_user


def test_another_clients_bank_is_not_found_and_untouched(api, other_user):  # type: ignore[no-untyped-def]
    theirs = bank_create(name="theirs", client=other_user)
    bank_entry_add(bank=theirs, pdq_hash=H1)
    site = bank_create(name="site")

    answers = [api.get(f"{BANKS}{theirs.pk}/"), api.patch(f"{BANKS}{theirs.pk}/", {"enabled": False}, format="json"),
               api.delete(f"{BANKS}{theirs.pk}/"), api.get(f"{BANKS}{theirs.pk}/entries/"),
               api.post(f"{BANKS}{theirs.pk}/entries/", {"pdq_hash": H2}, format="json"),
               api.delete(f"{BANKS}{theirs.pk}/entries/{theirs.entries.get().pk}/"),
               api.get(f"{BANKS}{theirs.pk}/export/"), api.get(f"{BANKS}{site.pk}/"), api.get(f"{BANKS}nope/")]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "not_found")] * 9
    theirs.refresh_from_db()
    assert (theirs.enabled, list(theirs.entries.values_list("pdq_hash", flat=True))) == (True, [H1])


@pytest.mark.parametrize("value", ["abc", "z" * 64, "0" * 65, ""])
def test_a_hash_of_the_wrong_length_or_alphabet_is_400_hash_invalid(api, client_user, value):  # type: ignore[no-untyped-def]
    bank = bank_create(name="mine", client=client_user)

    response = api.post(f"{BANKS}{bank.pk}/entries/", {"pdq_hash": value}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "hash_invalid")
    assert BankEntry.objects.count() == 0


def test_entries_are_added_listed_and_removed(api, client_user):  # type: ignore[no-untyped-def]
    bank = bank_create(name="mine", client=client_user)

    added = api.post(f"{BANKS}{bank.pk}/entries/", {"pdq_hash": H1.upper(), "note": "viral"}, format="json")
    again = api.post(f"{BANKS}{bank.pk}/entries/", {"pdq_hash": H1}, format="json")

    assert added.status_code == 201 and added.json()["pdq_hash"] == H1 and added.json()["source"] == "api"
    assert (again.status_code, again.json()["code"]) == (409, "entry_exists")
    entry_id = added.json()["id"]
    assert [e["note"] for e in api.get(f"{BANKS}{bank.pk}/entries/").json()] == ["viral"]
    assert api.delete(f"{BANKS}{bank.pk}/entries/{entry_id}/").status_code == 204
    assert BankEntry.objects.count() == 0


def test_import_refuses_a_malformed_list_with_line_numbers(api, client_user):  # type: ignore[no-untyped-def]
    bank = bank_create(name="mine", client=client_user)

    response = api.post(f"{BANKS}{bank.pk}/import/", {"content": f"pdq {H1}\npdq nothex\n{H2}\n"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "hash_list_invalid"
    assert [d["line"] for d in response.json()["details"]] == [2]
    assert BankEntry.objects.count() == 0


def test_import_then_export_round_trips(api, client_user):  # type: ignore[no-untyped-def]
    bank = bank_create(name="mine", client=client_user)

    imported = api.post(f"{BANKS}{bank.pk}/import/", {"content": f"pdq {H1}\n{H2}\n"}, format="json")
    exported = api.get(f"{BANKS}{bank.pk}/export/")
    as_csv = api.get(f"{BANKS}{bank.pk}/export/", {"list_format": "csv"})
    bad = api.get(f"{BANKS}{bank.pk}/export/", {"list_format": "xml"})

    assert imported.json() == {"added": 2, "already_present": 0}
    assert (exported["Content-Type"], exported.content.decode()) == (
        "text/plain; charset=utf-8", f"pdq {H1}\npdq {H2}\n")
    assert as_csv.content.decode().splitlines()[1] == f"pdq,{H1},mine,POSITIVE_CLASS,"
    assert (bad.status_code, bad.json()["code"]) == (400, "format_invalid")


def test_bank_fields_are_checked(api, client_user):  # type: ignore[no-untyped-def]
    bank_create(name="taken", client=client_user)

    answers = [api.post(BANKS, {"name": "x", "threshold": 300}, format="json"),
               api.post(BANKS, {"name": "x", "action": "ban"}, format="json"),
               api.post(BANKS, {"name": "taken"}, format="json")]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (400, "bank_invalid"), (400, "bank_invalid"), (409, "bank_name_taken")]
    assert Bank.objects.count() == 1


def test_the_post_output_shows_the_pdq_hash(api, client_user):  # type: ignore[no-untyped-def]
    from django.core.files.base import ContentFile

    from tests.factories import image_bytes

    post = PostFactory(client=client_user, pdq_hash=H1, pdq_quality=87, image_width=64, image_height=48,
                       image_format="JPEG")
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)

    image = api.get(f"/api/v1/posts/{post.pk}/").json()["image"]

    assert (image["pdq"], image["pdq_quality"]) == (H1, 87)


def test_another_client_cannot_reach_a_bank_through_its_own_key(client_user, other_user):  # type: ignore[no-untyped-def]
    mine = bank_create(name="mine", client=client_user)

    response = _api_client_for(other_user).get(f"{BANKS}{mine.pk}/entries/")

    assert response.status_code == 404
