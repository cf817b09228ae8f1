"""Worker heartbeats: recorded per worker, judged by /readyz, shown on the stats page."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from moderation.models import WebhookDelivery, WebhookEndpoint, WorkerHeartbeat
from moderation.services.heartbeats import worker_heartbeat_record
from tests.factories import PostFactory, UserFactory

pytestmark = pytest.mark.django_db
STRICT = {"READY_GPU_WORKER_MAX_AGE": 60, "READY_DEFAULT_WORKER_MAX_AGE": 30}


def test_a_heartbeat_is_one_row_per_worker():  # type: ignore[no-untyped-def]
    worker_heartbeat_record(worker="gpu0@a", queues=["gpu"], pid=7, started=True)
    worker_heartbeat_record(worker="gpu0@a", queues=["gpu"], pid=7)
    worker_heartbeat_record(worker="default@a", queues=["default", "gpu", "default"])

    assert list(WorkerHeartbeat.objects.values_list("name", "queues", "pid")) == [
        ("default@a", ",default,gpu,", None), ("gpu0@a", ",gpu,", 7)]


def test_readyz_leaves_workers_out_unless_asked(client, settings):  # type: ignore[no-untyped-def]
    assert set(client.get("/readyz").json()["checks"]) == {"database", "broker"}


def test_readyz_is_red_when_no_worker_of_a_queue_was_seen_recently(client, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, **STRICT}
    worker_heartbeat_record(worker="gpu0@a", queues=["gpu"])
    worker_heartbeat_record(worker="default@a", queues=["default"])
    WorkerHeartbeat.objects.filter(name="default@a").update(last_seen_at=timezone.now() - timedelta(seconds=31))

    response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["gpu_worker"], checks["default_worker"]) == (True, False)


def test_readyz_is_green_with_fresh_workers_of_both_queues(client, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, **STRICT}
    worker_heartbeat_record(worker="gpu0@a", queues=["gpu"])
    worker_heartbeat_record(worker="default@a", queues=["default"])

    checks = client.get("/readyz").json()["checks"]

    assert (checks["gpu_worker"], checks["default_worker"]) == (True, True)


def test_stats_page_shows_workers_and_the_oldest_pending_webhook(client):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    lead = UserFactory(username="leo", is_staff=True)
    lead.groups.add(Group.objects.get(name="Lead"))
    client.force_login(lead)
    worker_heartbeat_record(worker="gpu0@host", queues=["gpu"])
    WorkerHeartbeat.objects.update(last_seen_at=timezone.now() - timedelta(seconds=42))
    post = PostFactory()
    endpoint = WebhookEndpoint.objects.create(client=post.client, url="https://example.com/h", secret="s")
    WebhookDelivery.objects.create(post=post, endpoint=endpoint, post_state="allowed", event_key="allowed",
                                   payload={}, created_at=timezone.now() - timedelta(seconds=125))

    page = client.get(reverse("admin:moderation_review_stats")).content.decode()

    assert "<td>gpu0@host</td><td>gpu</td>" in page
    assert ">42 s ago</td>" in page
    assert "Oldest pending webhook: 125 s." in page


@pytest.mark.parametrize(("overrides", "ids"), [
    ({"READY_GPU_WORKER_MAX_AGE": 60, "WORKER_HEARTBEAT_INTERVAL": 2.5}, []),
    ({"READY_GPU_WORKER_MAX_AGE": 0}, ["moderation.E013"]),
    ({"READY_DEFAULT_WORKER_MAX_AGE": "60"}, ["moderation.E013"]),
    ({"WORKER_HEARTBEAT_INTERVAL": None}, ["moderation.E013"]),
    ({"MAX_BOXES_PER_IMAGE": 0}, ["moderation.E004"]),
    ({"BOX_MERGE_IOU": 1.5}, ["moderation.E005"]),
])
def test_liveness_and_box_settings_are_checked(settings, overrides, ids):  # type: ignore[no-untyped-def]
    from moderation.checks import moderation_settings_check

    settings.MODERATION = {**settings.MODERATION, **overrides}

    assert [e.id for e in moderation_settings_check()] == ids
