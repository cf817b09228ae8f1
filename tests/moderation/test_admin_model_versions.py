"""Model versions in the admin: read-only pages, promote and roll back behind a comparison, who did it."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import reverse

from moderation.models import ModelVersion
from moderation.selectors.learning import MetricRow, model_version_comparison
from moderation.services.learning import model_promote, model_rollback
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _metrics(auroc: float, f1: float, ece: float) -> dict:
    return {"macro": {"auroc": auroc, "ece": ece, "review": {"f1": f1}}, "categories": {}}


def version(n: int, *, metrics: dict | None = None, baseline: dict | None = None) -> ModelVersion:
    v = ModelVersion(version=n, digest=f"d{n}", dataset_digest="x", metrics=metrics or {},
                     baseline_metrics=baseline or {})
    v.artifact.save("head.safetensors", ContentFile(b"weights"), save=False)
    v.save()
    return v


@pytest.fixture
def lead(db):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    user = UserFactory(username="leo", is_staff=True)
    user.groups.add(Group.objects.get(name="Lead"))
    return user


@pytest.fixture
def lead_client(client, lead):  # type: ignore[no-untyped-def]
    client.force_login(lead)
    return client


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    """v1 active; v2 a candidate evaluated against v1 on v2's split, worse on AUROC and ECE."""
    v1 = version(1, metrics=_metrics(0.80, 0.50, 0.10))
    model_promote(version=v1, by=None)
    v2 = version(2, metrics=_metrics(0.70, 0.60, 0.20), baseline={**_metrics(0.75, 0.55, 0.05), "source": "v1"})
    return v1, v2


def test_promote_and_rollback_record_who_did_it(lead, pair):  # type: ignore[no-untyped-def]
    v1, v2 = pair
    model_promote(version=v2, by=lead)
    v1.refresh_from_db(), v2.refresh_from_db()
    assert (v2.status, v2.promoted_by, v1.status, v1.retired_by) == ("active", "leo", "retired", "leo")
    assert v1.promoted_by == "auto"  # the fixture promoted it with by=None

    other = UserFactory(username="lena")
    assert model_rollback(by=other).pk == v1.pk
    v1.refresh_from_db(), v2.refresh_from_db()
    assert (v1.status, v1.promoted_by, v1.retired_by, v2.status, v2.retired_by) == (
        "active", "lena", "", "retired", "lena")


def test_comparison_pairs_metrics_on_the_same_split_and_flags_what_is_worse(pair):  # type: ignore[no-untyped-def]
    v1, v2 = pair

    comparison = model_version_comparison(new=v2, current=v1)

    assert (comparison.new_label, comparison.current_label) == ("v2", "v1")
    assert comparison.split_note == "both on v2's held-out split"
    assert comparison.rows == (MetricRow("AUROC", 0.70, 0.75, True),
                               MetricRow("F1 at the review threshold", 0.60, 0.55, False),
                               MetricRow("ECE (calibration error)", 0.20, 0.05, True))


def test_version_page_is_read_only_with_a_promote_button(lead_client, pair):  # type: ignore[no-untyped-def]
    _, v2 = pair

    page = lead_client.get(reverse("admin:moderation_modelversion_change", args=[v2.pk])).content.decode()

    assert 'name="replaced"' not in page and 'name="_save"' not in page and "<select" not in page
    assert f'href="{reverse("admin:moderation_modelversion_promote", args=[v2.pk])}" id="promote-version"' in page
    assert "rollback-version" not in page


def test_promote_asks_first_with_the_metrics_side_by_side_and_a_warning(lead_client, pair):  # type: ignore[no-untyped-def]
    v1, v2 = pair
    url = reverse("admin:moderation_modelversion_promote", args=[v2.pk])

    confirm = lead_client.get(url).content.decode()

    assert ModelVersion.objects.get(pk=v2.pk).status == "candidate"
    assert ("Warning: v2 is worse than v1 on AUROC, ECE (calibration error)." in confirm)
    assert "<td>AUROC</td><td>0.700</td><td>0.750</td>" in confirm

    done = lead_client.post(url)

    assert done["Location"] == reverse("admin:moderation_modelversion_change", args=[v2.pk])
    assert list(ModelVersion.objects.order_by("version").values_list("status", "promoted_by")) == [
        ("retired", "auto"), ("active", "leo")]


def test_rollback_asks_first_then_restores_the_replaced_version(lead_client, pair):  # type: ignore[no-untyped-def]
    v1, v2 = pair
    model_promote(version=v2, by=None)
    url = reverse("admin:moderation_modelversion_rollback", args=[v2.pk])

    confirm = lead_client.get(url).content.decode()
    assert "<td>AUROC</td><td>0.750</td><td>0.700</td>" in confirm  # v1 on v2's split beside v2
    assert "Warning" in confirm and ModelVersion.objects.get(pk=v2.pk).status == "active"

    lead_client.post(url)

    assert list(ModelVersion.objects.order_by("version").values_list("status", "promoted_by", "retired_by")) == [
        ("active", "leo", ""), ("retired", "auto", "leo")]


def test_reviewers_cannot_promote(client, pair):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    user = UserFactory(username="rita", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewer"))
    client.force_login(user)
    _, v2 = pair

    response = client.post(reverse("admin:moderation_modelversion_promote", args=[v2.pk]))

    assert response.status_code == 403 and ModelVersion.objects.get(pk=v2.pk).status == "candidate"
