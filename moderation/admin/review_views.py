"""The reviewer's pages in the admin: the queue, one post, deciding, undoing, asking the image."""
from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from moderation.admin.access import REVIEW_PERM, VIEW_PERM, can_review, permission_require
from moderation.admin.display import short_id
from moderation.conf import moderation_settings
from moderation.models import Category, EngineRequest, Post, PostState, ReviewDecision
from moderation.selectors.posts import engine_request_summary
from moderation.selectors.clusters import (CLUSTER_SHOWN, ClusterMember, review_cluster, review_neighbours,
                                           review_queue_page)
from moderation.selectors.reviews import (models_roles_latest, post_review_evidence, review_last_decision,
                                          review_outcome, review_queue_summary)
from moderation.errors import ServiceError
from moderation.services.requests import post_grounding_request, post_question_ask
from moderation.services.reviews import (review_claim_next, review_decide, review_decide_cluster,
                                         review_decision_check, review_undo)


# A cluster decision's message names this many skipped posts (the confirmation page listed them all).
SKIPPED_NAMED = 20


def _context(request: HttpRequest, site: admin.AdminSite, title: str, **extra: Any) -> dict[str, Any]:
    return {**site.each_context(request), "opts": Post._meta, "title": title, **extra}


def post_review_url(post_id: Any) -> str:
    return reverse("admin:moderation_review_post", kwargs={"post_id": post_id})


@require_GET
def queue_view(request: HttpRequest, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, VIEW_PERM)
    context = _context(request, site, "Review queue", summary=review_queue_summary(),
                       rows=review_queue_page(), now=timezone.now(), can_review=can_review(request.user),
                       roles=models_roles_latest())
    return TemplateResponse(request, "moderation/admin/queue.html", context)


def _next_post_redirect(request: HttpRequest) -> HttpResponse:
    post = review_claim_next(reviewer=request.user)
    if post is None:
        messages.info(request, "Nothing left for you to claim: the queue is empty, or holds only posts that "
                               "others hold or that you escalated.")
        return redirect("admin:moderation_review_queue")
    return redirect(post_review_url(post.pk))


@require_POST
def claim_next_view(request: HttpRequest, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, REVIEW_PERM)
    return _next_post_redirect(request)


def _categories(post: Post) -> list[Category]:
    analysis = post.current_analysis
    policy_filter = {"policy_id": analysis.policy_id} if analysis else {}
    categories = Category.objects.filter(**policy_filter).select_related("policy")
    if not analysis:
        latest = categories.order_by("-policy__version").first()
        categories = categories.filter(policy_id=latest.policy_id) if latest else categories
    return list(categories.order_by("position", "slug"))


@require_GET
def post_review_view(request: HttpRequest, post_id: Any, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, VIEW_PERM)
    post = get_object_or_404(Post.objects.select_related("current_analysis__policy", "review_claimed_by"), pk=post_id)
    previous_id, next_id = review_neighbours(post=post)
    cluster = review_cluster(post=post, reviewer=request.user)
    context = _context(
        request, site, f"Review post {short_id(post.pk)}", post=post, undo_seconds=_undo_seconds(), **post_review_evidence(post=post),
        categories=_categories(post), previous_id=previous_id, next_id=next_id, outcome=review_outcome(post=post),
        can_decide=can_review(request.user) and post.state == PostState.NEEDS_REVIEW,
        claimed_by_other=_claimed_by_other(post, request.user), last_decision=review_last_decision(
            reviewer=request.user), **_cluster_context(cluster, request.user))
    return TemplateResponse(request, "moderation/admin/post_review.html", context)


def _cluster_context(cluster: list[ClusterMember], user: Any) -> dict[str, Any]:
    near = cluster[1:1 + CLUSTER_SHOWN]
    cluster_open = sum(1 for m in cluster if not m.skip)
    return {"near": near, "near_count": len(cluster) - 1, "near_more": len(cluster) - 1 - len(near),
            "cluster_open": cluster_open, "can_review_cluster": bool(near) and cluster_open > 0 and can_review(user)}


def _undo_seconds() -> str:
    return f"{moderation_settings.REVIEW_UNDO_SECONDS:g}"


def _claimed_by_other(post: Post, user: Any) -> bool:
    return bool(post.review_claimed_by_id and post.review_claimed_by_id != user.pk
                and post.review_claimed_until and post.review_claimed_until >= timezone.now())


@require_POST
def decide_view(request: HttpRequest, post_id: Any, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, REVIEW_PERM)
    post = get_object_or_404(Post, pk=post_id)
    try:
        decision = review_decide(post=post, reviewer=request.user, verdict=request.POST.get("verdict", ""),
                                 category=request.POST.get("category", ""), reason=request.POST.get("reason", ""))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(post_review_url(post.pk))
    messages.success(request, f"Recorded “{decision.get_verdict_display()}” for post {short_id(post.pk)}. "
                              f"Press u within {_undo_seconds()} seconds to undo.")
    return _next_post_redirect(request)


@require_POST
def cluster_decide_view(request: HttpRequest, post_id: Any, *, site: admin.AdminSite) -> HttpResponse:
    """One decision for the post and its near-duplicates: first a page listing who it reaches and who
    is skipped and why; on confirm, one ledger row per post it reaches."""
    permission_require(request.user, REVIEW_PERM)
    post = get_object_or_404(Post.objects.select_related("current_analysis__policy", "review_claimed_by"), pk=post_id)
    verdict, category, reason = (request.POST.get(key, "") for key in ("verdict", "category", "reason"))
    if request.POST.get("confirm") != "yes":
        return _cluster_confirmation(request, site, post, verdict=verdict, category=category, reason=reason)
    members = _cluster_member_ids(post, request.POST.getlist("member"))
    try:
        decided, skipped = review_decide_cluster(post=post, reviewer=request.user, member_ids=members,
                                                 verdict=verdict, category=category, reason=reason)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(post_review_url(post.pk))
    messages.success(request, f"Recorded “{ReviewDecision.Verdict(verdict).label}” for {len(decided)} post(s) "
                              f"of the cluster of post {short_id(post.pk)}.")
    if skipped:
        named = "; ".join(f"{short_id(s.post.pk)} ({s.reason})" for s in skipped[:SKIPPED_NAMED])
        more = f"; and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
        messages.warning(request, f"{len(skipped)} post(s) skipped: {named}{more}.")
    return _next_post_redirect(request)


def _cluster_confirmation(request: HttpRequest, site: admin.AdminSite, post: Post, *, verdict: str,
                          category: str, reason: str) -> HttpResponse:
    category = category if verdict == ReviewDecision.Verdict.VIOLATING else ""
    try:
        review_decision_check(post=post, verdict=verdict, category=category, reason=reason)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(post_review_url(post.pk))
    members = review_cluster(post=post, reviewer=request.user)
    context = _context(request, site, f"Decide the cluster of post {short_id(post.pk)}?", post=post,
                       members=members, reaching=sum(1 for m in members if not m.skip), verdict=verdict,
                       verdict_label=ReviewDecision.Verdict(verdict).label, category=category, reason=reason)
    return TemplateResponse(request, "moderation/admin/cluster_confirm.html", context)


def _cluster_member_ids(post: Post, values: list[str]) -> list[uuid.UUID]:
    """The posts the confirmation page listed; a malformed id, or another client's post, is a 404."""
    try:
        ids = [uuid.UUID(value) for value in values]
    except ValueError:
        raise Http404("No such post.")
    if Post.objects.filter(pk__in=ids).exclude(client_id=post.client_id).exists():
        raise Http404("No such post in this client's posts.")
    return ids


@require_POST
def undo_view(request: HttpRequest, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, REVIEW_PERM)
    undo = review_undo(reviewer=request.user)
    if undo is None:
        messages.warning(request, f"Nothing to undo: your last decision is older than {_undo_seconds()} seconds, "
                                  "already undone, or superseded.")
        return redirect(_back(request))
    messages.success(request, f"Undid your “{undo.undoes.get_verdict_display()}”; the post is back in review.")
    return redirect(post_review_url(undo.post_id))


def _back(request: HttpRequest) -> str:
    """The page the form was sent from (``next``), if it is on this site; else the queue."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return reverse("admin:moderation_review_queue")


def _request_json(found: EngineRequest) -> dict[str, Any]:
    return {**engine_request_summary(found),
            "poll_url": reverse("admin:moderation_review_request", kwargs={"request_id": found.pk})}


@require_POST
def ask_view(request: HttpRequest, post_id: Any, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, REVIEW_PERM)
    post = get_object_or_404(Post, pk=post_id)
    try:
        if request.POST.get("kind") == EngineRequest.Kind.GROUNDING:
            phrases = [p.strip() for p in request.POST.get("phrases", "").split(",") if p.strip()]
            created = post_grounding_request(reviewer=request.user, post_id=post.pk, phrases=phrases)
        else:
            created = post_question_ask(reviewer=request.user, post_id=post.pk, question=request.POST.get("question"))
    except ServiceError as exc:
        return JsonResponse({"code": exc.code, "message": exc.message}, status=exc.status)
    return JsonResponse(_request_json(created), status=202)


@require_GET
def request_poll_view(request: HttpRequest, request_id: Any, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, VIEW_PERM)
    found = get_object_or_404(EngineRequest, pk=request_id, post__isnull=False)
    return JsonResponse(_request_json(found))
