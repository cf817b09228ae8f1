"""Banks in the admin and on the command line: leads manage site banks, lists move in and out whole."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from moderation.models import Bank, BankEntry
from moderation.services.banks import bank_create, bank_entry_add
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
H1, H2 = "a" * 64, "0123456789abcdef" * 4


@pytest.fixture
def as_role(client):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())

    def login(group: str):  # type: ignore[no-untyped-def]
        user = UserFactory(username=group.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client
    return login


def test_a_lead_creates_a_site_bank_and_adds_an_entry(as_role):  # type: ignore[no-untyped-def]
    lead = as_role("Lead")

    created = lead.post(reverse("admin:moderation_bank_add"),
                        {"name": "terror memes", "action": "remove", "threshold": 31, "enabled": "on", "description": ""})
    bank = Bank.objects.get()
    added = lead.post(reverse("admin:moderation_bankentry_add"),
                      {"bank": bank.pk, "pdq_hash": H1.upper(), "source": "gifct", "note": "", "enabled": "on"})
    refused = lead.post(reverse("admin:moderation_bankentry_add"),
                        {"bank": bank.pk, "pdq_hash": "xyz", "source": "", "note": "", "enabled": "on"})

    assert (created.status_code, added.status_code, refused.status_code) == (302, 302, 200)
    assert "A PDQ hash is 64 hexadecimal digits" in refused.content.decode()
    assert bank.client is None
    assert list(bank.entries.values_list("pdq_hash", "source", "added_by__username")) == [(H1, "gifct", "lead")]


def test_a_reviewer_cannot_change_banks(as_role):  # type: ignore[no-untyped-def]
    bank = bank_create(name="site")
    reviewer = as_role("Reviewer")

    answers = [reviewer.get(reverse("admin:moderation_bank_changelist")),
               reviewer.post(reverse("admin:moderation_bank_import", args=[bank.pk]), {"text": f"pdq {H1}"})]

    assert [a.status_code for a in answers] == [403, 403]
    assert BankEntry.objects.count() == 0


def test_the_admin_import_names_each_bad_line_and_imports_nothing(as_role):  # type: ignore[no-untyped-def]
    bank = bank_create(name="site")
    lead = as_role("Lead")

    refused = lead.post(reverse("admin:moderation_bank_import", args=[bank.pk]), {"text": f"pdq {H1}\npdq zz\n"})
    accepted = lead.post(reverse("admin:moderation_bank_import", args=[bank.pk]), {"text": f"pdq {H1}\n{H2}\n"})

    assert refused.status_code == 200
    assert "line 2: a PDQ hash is 64 hexadecimal digits" in refused.content.decode()
    assert accepted.status_code == 302
    assert sorted(bank.entries.values_list("pdq_hash", flat=True)) == sorted([H1, H2])


def test_the_admin_exports_one_bank_as_a_signal_file(as_role):  # type: ignore[no-untyped-def]
    bank = bank_create(name="site")
    bank_entry_add(bank=bank, pdq_hash=H1)
    lead = as_role("Lead")

    response = lead.post(reverse("admin:moderation_bank_changelist"),
                         {"action": "export_signal_file", "_selected_action": [bank.pk]})

    assert response.content.decode() == f"pdq {H1}\n"
    assert response["Content-Disposition"] == f'attachment; filename="bank-{bank.pk}.txt"'


def test_the_command_imports_and_exports(tmp_path):  # type: ignore[no-untyped-def]
    bank = bank_create(name="site list")
    source = tmp_path / "hashes.txt"
    source.write_text(f"pdq {H1}\n{H2}\n")
    out = StringIO()

    call_command("moderation_bank", "import", "site list", str(source), stdout=out)
    call_command("moderation_bank", "export", str(bank.pk), str(tmp_path / "out.csv"), "--format", "csv")

    assert out.getvalue().strip() == "Imported 2 hash(es) into site list; 0 were there already."
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        f"pdq,{H1},site list,POSITIVE_CLASS,", f"pdq,{H2},site list,POSITIVE_CLASS,"]


def test_the_command_refuses_a_malformed_list_line_by_line(tmp_path):  # type: ignore[no-untyped-def]
    bank = bank_create(name="site list")
    source = tmp_path / "bad.txt"
    source.write_text(f"pdq {H1}\npdq 12\nmd5 abc\n")
    err = StringIO()

    with pytest.raises(CommandError, match="2 line"):
        call_command("moderation_bank", "import", str(bank.pk), str(source), stderr=err)

    assert err.getvalue().splitlines() == [f"{source}:2: a PDQ hash is 64 hexadecimal digits, got '12'",
                                           f"{source}:3: signal type 'md5' is not pdq"]
    assert bank.entries.count() == 0


def test_the_review_page_shows_a_bank_decided_post(as_role, tmp_path):  # type: ignore[no-untyped-def]
    from moderation.models import Post
    from moderation.services.analysis import post_claim_batch
    from moderation.services.banks import bank_match_batch
    from tests.moderation.test_banks import jpeg, meme, post_with

    from vlm_engine.pdq import pdq_compute

    bank = bank_create(name="suspicious", action="review")
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(jpeg(meme(20))).hex)
    post = post_with(jpeg(meme(20)))
    token, posts = post_claim_batch(limit=2, worker="w")
    bank_match_batch(token=token, posts=posts, worker="w")
    reviewer = as_role("Reviewer")

    page = reviewer.get(reverse("admin:moderation_review_post", args=[post.pk]))

    assert Post.objects.get(pk=post.pk).state == "needs_review"
    assert page.status_code == 200
    assert "of the site bank \u201csuspicious\u201d at PDQ distance 0" in page.content.decode()
