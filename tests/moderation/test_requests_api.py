"""Ad-hoc questions, groundings, captions and search: validation, isolation, nothing queued on refusal."""
from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from moderation.models import Analysis, EngineRequest, Post
from moderation.services.search import nearest_exact
from tests.factories import PostFactory, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def image_post(client_user) -> Post:  # type: ignore[no-untyped-def]
    post = PostFactory(client=client_user)
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)
    return post


@pytest.mark.parametrize(
    ("path", "body", "kind", "params"),
    [
        ("questions", {"question": " Is there a weapon? "}, "question", {"question": "Is there a weapon?"}),
        ("groundings", {"phrases": ["young person", "bat", "bat"]}, "grounding", {"phrases": ["young person", "bat"]}),
        ("captions", {"prompt": "a protest"}, "caption", {"prompt": "a protest"}),
        ("captions", {}, "caption", {"prompt": None}),
    ],
)
def test_request_is_accepted_and_queued(api, image_post, path, body, kind, params):  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/posts/{image_post.pk}/{path}/", body, format="json")

    assert response.status_code == 202
    created = EngineRequest.objects.get()
    assert (created.kind, created.params, created.state, created.post_id) == (kind, params, "pending", image_post.pk)
    assert response.json()["url"] == f"http://testserver/api/v1/requests/{created.pk}/"
    assert api.get(response.json()["url"]).json()["status"] == "pending"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("groundings", {"phrases": []}, 400, "phrases_invalid"),
        ("groundings", {"phrases": "bat"}, 400, "phrases_invalid"),
        ("groundings", {"phrases": ["x"] * 21}, 400, "phrases_invalid"),
        ("groundings", {"phrases": ["x" * 101]}, 400, "phrase_invalid"),
        ("groundings", {"phrases": [""]}, 400, "phrase_invalid"),
        ("questions", {"question": "x" * 10_000}, 400, "question_invalid"),
        ("questions", {"question": ""}, 400, "question_invalid"),
        ("questions", {}, 400, "question_invalid"),
        ("captions", {"prompt": "p" * 201}, 400, "prompt_invalid"),
    ],
)
def test_bad_requests_queue_nothing(api, image_post, path, body, status, code):  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/posts/{image_post.pk}/{path}/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert EngineRequest.objects.count() == 0


@pytest.mark.parametrize("path", ["questions", "groundings", "captions"])
def test_unknown_and_foreign_posts_are_404(api, other_user, path):  # type: ignore[no-untyped-def]
    foreign = PostFactory(client=other_user)
    body = {"questions": {"question": "q"}, "groundings": {"phrases": ["p"]}, "captions": {"prompt": "p"}}[path]

    unknown = api.post(f"/api/v1/posts/{uuid.uuid4()}/{path}/", body, format="json")
    other = api.post(f"/api/v1/posts/{foreign.pk}/{path}/", body, format="json")

    assert (unknown.status_code, other.status_code) == (404, 404)
    assert EngineRequest.objects.count() == 0


def test_text_only_post_has_nothing_to_ask(api, client_user):  # type: ignore[no-untyped-def]
    post = PostFactory(client=client_user)

    response = api.post(f"/api/v1/posts/{post.pk}/questions/", {"question": "q"}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "post_has_no_image")
    assert EngineRequest.objects.count() == 0


def test_request_results_are_private_and_shown_on_the_post(api, other_api, image_post):  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/posts/{image_post.pk}/questions/", {"question": "Is there a bat?"}, format="json")
    EngineRequest.objects.update(state="done", result={"answer": "yes"})

    detail = api.get(f"/api/v1/posts/{image_post.pk}/").json()

    assert other_api.get(response.json()["url"]).status_code == 404
    assert [(r["kind"], r["result"]) for r in detail["requests"]] == [("question", {"answer": "yes"})]


def unit(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def analysed(client, vector: np.ndarray, model_version: str = "clip:tiny@abc+owlv2:x@y") -> Post:  # type: ignore[no-untyped-def]
    post = PostFactory(client=client, state="allowed")
    analysis = Analysis.objects.create(post=post, claim_token=uuid.uuid4(), policy_id=1, model_version=model_version,
                                       decision="allow", image_embedding=vector.astype("<f4").tobytes())
    Post.objects.filter(pk=post.pk).update(current_analysis=analysis)
    return post


def test_search_ranks_own_posts_by_cosine(api, client_user, other_user):  # type: ignore[no-untyped-def]
    near, far, middle = (analysed(client_user, unit(v)) for v in ([1, 0, 0], [0, 0, 1], [1, 1, 0]))
    analysed(other_user, unit([1, 0, 0]))  # another client's identical post never shows up
    analysed(client_user, unit([1, 0, 0, 0]), model_version="clip:other@zzz")  # another CLIP: not comparable
    EngineRequest.objects.create(client=client_user, kind="query", state="done", model_version="clip:tiny@abc",
                                 params={"query": "a bat", "sha256": hashlib.sha256(b"a bat").hexdigest()},
                                 result={"embedding": unit([1, 0.1, 0]).tolist()}, completed_at=timezone.now())

    body = api.get("/api/v1/search/", {"q": "a bat", "k": 2}).json()

    assert [r["id"] for r in body["results"]] == [str(near.pk), str(middle.pk)]
    assert body["results"][0]["score"] == pytest.approx(float(unit([1, 0.1, 0]) @ unit([1, 0, 0])), abs=1e-6)
    assert far.pk not in [r["id"] for r in body["results"]]


def test_search_without_a_worker_is_503_after_timeout(api, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "SEARCH_TIMEOUT": 0.2}

    response = api.get("/api/v1/search/", {"q": "anything"})

    assert (response.status_code, response.json()["code"]) == (503, "search_unavailable")


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x", "k": 0}, {"q": "x" * 501}])
def test_search_validates_parameters(api, params):  # type: ignore[no-untyped-def]
    assert api.get("/api/v1/search/", params).status_code == 400


def test_nearest_exact_breaks_ties_by_id():  # type: ignore[no-untyped-def]
    v = unit([1, 0])
    rows = [("b", v.astype("<f4").tobytes()), ("a", v.astype("<f4").tobytes())]

    assert [h.post_id for h in nearest_exact(rows=rows, vector=v, k=2)] == ["a", "b"]


def test_query_embeddings_are_cached_per_client(api, client_user, other_user, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "SEARCH_TIMEOUT": 0.2}
    EngineRequest.objects.create(client=other_user, kind="query", state="done", model_version="clip:tiny@abc",
                                 params={"query": "a bat", "sha256": hashlib.sha256(b"a bat").hexdigest()},
                                 result={"embedding": unit([1, 0, 0]).tolist()}, completed_at=timezone.now())

    response = api.get("/api/v1/search/", {"q": "a bat"})

    # Another client's embedding of the same text is not reused: this client's query waits for a worker.
    assert (response.status_code, response.json()["code"]) == (503, "search_unavailable")
    assert EngineRequest.objects.filter(client=client_user, kind="query", params__query="a bat").count() == 1
