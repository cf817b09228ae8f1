"""Database models: posts, their analyses and events, policies, API keys, hash banks."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import Q
from django.db.models.functions import Cast
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField


class PostState(models.TextChoices):
    QUEUED = "queued"
    ANALYZING = "analyzing"
    ALLOWED = "allowed"
    NEEDS_REVIEW = "needs_review"
    REMOVED = "removed"
    REVIEWED = "reviewed"
    FAILED = "failed"
    RESTORED = "restored"  # restricted, then put back by an overturned appeal


class Decision(models.TextChoices):
    ALLOW = "allow"
    REVIEW = "review"
    REMOVE = "remove"


def post_image_path(instance: "Post", filename: str) -> str:
    # The client's file name is never used: it may carry personal data or a lying extension.
    return f"posts/{timezone.now():%Y/%m}/{instance.id}.jpg"


def post_thumbnail_path(instance: "Post", filename: str) -> str:
    return f"thumbnails/{timezone.now():%Y/%m}/{instance.id}.jpg"


class Policy(models.Model):
    """One immutable version of the moderation policy; the highest version is active."""

    version = models.PositiveIntegerField(unique=True)
    benign_prompts = models.JSONField(default=list)
    # Short texts that break no rule (hard negatives such as "I hate Mondays"), for the text role.
    benign_exemplars = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-version"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"policy v{self.version}"


class Category(models.Model):
    """A policy category with its prompts, phrases, questions and thresholds."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="categories")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    severity = models.FloatField(default=1.0)
    prompts = models.JSONField(default=list)
    phrases = models.JSONField(default=list)
    questions = models.JSONField(default=list)
    exemplars = models.JSONField(default=list, blank=True)  # short example texts, for the text role
    review_threshold = models.FloatField(default=0.5)
    remove_threshold = models.FloatField(default=0.9)
    position = models.PositiveSmallIntegerField(default=0)
    # For statements of reasons: the DSA Transparency Database's category (a STATEMENT_CATEGORY_* key)
    # and ground; an illegal-content ground needs the legal provision relied on.
    dsa_category = models.CharField(max_length=64, default="STATEMENT_CATEGORY_OTHER_VIOLATION_TC")
    dsa_ground = models.CharField(max_length=40, default="DECISION_GROUND_INCOMPATIBLE_CONTENT", choices=[
        ("DECISION_GROUND_INCOMPATIBLE_CONTENT", "incompatible with the terms"),
        ("DECISION_GROUND_ILLEGAL_CONTENT", "illegal content")])
    legal_ground = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["policy", "position", "slug"]
        verbose_name_plural = "categories"
        constraints = [
            models.UniqueConstraint(fields=["policy", "slug"], name="moderation_category_unique_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.policy.version})" if self.policy_id else self.name


class ApiKey(models.Model):
    """An API key; only a SHA-256 of the secret is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="moderation_api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Post(models.Model):
    """A submitted image-plus-text post and where it stands in the pipeline."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Not indexed alone: the (client, ...) indexes below lead with it. Every index on this table
    # is written at submit and at both state changes of each post.
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="moderation_posts", db_index=False)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    text = models.TextField(blank=True)
    image = models.FileField(upload_to=post_image_path, blank=True, max_length=255)
    image_sha256 = models.CharField(max_length=64, blank=True)
    image_width = models.PositiveIntegerField(null=True, blank=True)
    image_height = models.PositiveIntegerField(null=True, blank=True)
    image_format = models.CharField(max_length=8, blank=True)
    # A small copy for the review queue, made once on first view (see services/images.py).
    image_thumbnail = models.FileField(upload_to=post_thumbnail_path, blank=True, max_length=255)
    # The image's PDQ hash (64 hex digits) and quality (0-100), computed by the worker before
    # any model runs; empty until then, and for posts without an image.
    pdq_hash = models.CharField(max_length=64, blank=True)
    pdq_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=PostState.choices, default=PostState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=255, blank=True)
    # Review queue: who holds the post and until when (claims expire), and its priority.
    review_claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                          on_delete=models.SET_NULL, related_name="+")
    review_claimed_until = models.DateTimeField(null=True, blank=True)
    review_priority = models.FloatField(default=0.0)
    current_analysis = models.ForeignKey("Analysis", null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    content_deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["client", "external_id"], condition=Q(external_id__isnull=False),
                                    name="moderation_post_unique_external_id"),
        ]
        indexes = [
            models.Index(fields=["state", "created_at"], name="moderation_post_queue"),
            models.Index(fields=["client", "-created_at", "id"], name="moderation_post_client"),
            models.Index(fields=["client", "state", "-created_at"], name="moderation_post_client_state"),
            models.Index(fields=["-created_at", "id"], name="moderation_post_changelist"),
            models.Index(fields=["state", "-review_priority", "created_at"], name="moderation_post_review_queue"),
            models.Index(fields=["created_at"], condition=Q(state="queued", attempts__gt=0),
                         name="moderation_post_retry_queue"),
        ]

    def __str__(self) -> str:
        return str(self.id)


def model_artifact_path(instance: "ModelVersion", filename: str) -> str:
    return f"models/fusion-head-v{instance.version}-{instance.digest}.safetensors"


class ModelVersion(models.Model):
    """A trained classifier head with its held-out metrics; at most one is active.

    Never deleted while an analysis refers to it (PROTECT), so every verdict stays traceable.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    artifact = models.FileField(upload_to=model_artifact_path, max_length=255)
    digest = models.CharField(max_length=64)
    categories = models.JSONField(default=list)
    metrics = models.JSONField(default=dict)
    baseline_metrics = models.JSONField(default=dict)
    dataset_digest = models.CharField(max_length=64)
    dataset_sizes = models.JSONField(default=dict)
    training_config = models.JSONField(default=dict)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # The version that was active when this one was promoted: where a rollback returns to.
    replaced = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Who made it active and who retired it, as usernames (they outlive the accounts);
    # "auto" when AUTO_PROMOTE_MARGIN promoted it.
    promoted_by = models.CharField(max_length=150, blank=True)
    retired_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"),
                                    name="moderation_modelversion_one_active"),
        ]

    def __str__(self) -> str:
        return f"head v{self.version} ({self.status})"


class Analysis(models.Model):
    """One engine verdict on a post, with the model and policy versions that produced it."""

    # Indexed by (post, -created_at) and (post, claim_token) below.
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="analyses", db_index=False)
    # A claim covers a batch; one analysis per (post, claim) means a duplicate delivery can't write twice.
    claim_token = models.UUIDField()
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="analyses")
    model_version = models.CharField(max_length=255)
    classifier = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="analyses")
    scoring = models.CharField(max_length=16, default="zero_shot")  # zero_shot | knn | head
    scores = models.JSONField(default=dict)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    top_category = models.CharField(max_length=64, blank=True)
    risk = models.FloatField(default=0.0)
    explanation = models.JSONField(default=dict)
    timings_ms = models.JSONField(default=dict)
    image_embedding = models.BinaryField(null=True, blank=True)
    text_embedding = models.BinaryField(null=True, blank=True)
    # The text role's (MiniLM) embedding of the same text, for the precedents and the trained head;
    # null without a text role, for a post without text, and for analyses stored before it was kept.
    sentence_embedding = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "analyses"
        indexes = [models.Index(fields=["post", "-created_at"], name="moderation_analysis_post"),
                   # The engine's removals, which the statement export looks for by date.
                   models.Index(fields=["created_at"], condition=Q(decision="remove"),
                                name="moderation_analysis_removals")]
        constraints = [
            models.UniqueConstraint(fields=["post", "claim_token"], name="moderation_analysis_once_per_claim"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} for {self.post_id}"


class PostEvent(models.Model):
    """Append-only audit row for every state change of a post."""

    # Indexed by (post, created_at) below.
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="events", db_index=False)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.CharField(max_length=150, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["post", "created_at"], name="moderation_event_post")]

    def __str__(self) -> str:
        return f"{self.post_id}: {self.from_state or '-'} → {self.to_state}"


class IdempotencyRecord(models.Model):
    """The first response to a submit made with an ``Idempotency-Key``, replayed on retries."""

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="moderation_idempotency_unique_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="moderation_idempotency_age")]


class WebhookEndpoint(models.Model):
    """Where a client wants its verdicts pushed; the secret signs every delivery."""

    client = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  related_name="moderation_webhook")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=128)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.client}: {self.url}"


class WebhookDelivery(models.Model):
    """One notification of a post's final state or of a reviewer's decision, with its delivery attempts."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    post_state = models.CharField(max_length=16)
    # What is being told, once: the final state the engine set, or "review:<decision id>".
    event_key = models.CharField(max_length=64)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        constraints = [
            # Exactly one delivery per final state a post reaches and per reviewer decision,
            # however often it is recorded.
            models.UniqueConstraint(fields=["post", "event_key"], name="moderation_webhook_once_per_event"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="moderation_webhook_due")]


class EngineRequest(models.Model):
    """An ad-hoc question, grounding, caption or search query, answered by a GPU worker."""

    class Kind(models.TextChoices):
        QUESTION = "question"
        GROUNDING = "grounding"
        CAPTION = "caption"
        QUERY = "query"  # the text embedding of a search query

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Origin(models.TextChoices):
        CLIENT = "client"  # asked through the API: the client sees it
        REVIEWER = "reviewer"  # asked in the admin: never shown to the client

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The post's owner (a search query's asker), whoever asked.
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    post = models.ForeignKey(Post, null=True, blank=True, on_delete=models.CASCADE, related_name="requests")
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.CLIENT)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    model_version = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "created_at"], name="moderation_request_queue"),
            models.Index(fields=["post", "-created_at"], name="moderation_request_post"),
            models.Index(fields=["reviewer", "created_at"], name="moderation_request_reviewer"),
        ]


class ReviewDecision(models.Model):
    """A reviewer's decision on a post: append-only, never updated or deleted by the app.

    The reviewer's username is stored beside the foreign key so the row keeps its meaning
    after the account is deleted. These rows are the retraining labels.
    """

    class Verdict(models.TextChoices):
        VIOLATING = "violating"
        NOT_VIOLATING = "not_violating"
        ESCALATE = "escalate"
        UNDO = "undo"  # withdraws the decision named in ``undoes``

    post = models.ForeignKey(Post, on_delete=models.PROTECT, related_name="review_decisions")
    analysis = models.ForeignKey(Analysis, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    reviewer_username = models.CharField(max_length=150)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    category = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    undoes = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["post", "-created_at"], name="moderation_decision_post"),
            models.Index(fields=["created_at"], name="moderation_decision_time"),
            models.Index(fields=["reviewer_username", "created_at"], name="moderation_decision_reviewer"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} on {self.post_id} by {self.reviewer_username}"


class WorkerHeartbeat(models.Model):
    """A worker's last sign of life: when it last finished a task or looked for work."""

    name = models.CharField(max_length=255, unique=True)  # Celery's node name, e.g. gpu0@host
    # The queues it consumes, comma-delimited with a leading and trailing comma (",gpu,"), so a
    # plain substring lookup finds a queue on every database.
    queues = models.CharField(max_length=255)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Notice(models.Model):
    """A notice about a post (DSA Art. 16, 22): who reports it, under which category and why.

    Only what the client sends is stored; ``reporter_reference`` is the client's own handle for
    the notifier, never a name or address the app asks for.
    """

    class ReporterType(models.TextChoices):
        USER = "user"
        TRUSTED_FLAGGER = "trusted_flagger"
        AUTHORITY = "authority"

    class Outcome(models.TextChoices):
        RESTRICTED = "restricted"  # removed by the engine, or found violating by a reviewer
        NO_ACTION = "no_action"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by (post, created_at) below.
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="notices", db_index=False)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                               db_index=False)
    reporter_type = models.CharField(max_length=16, choices=ReporterType.choices)
    reporter_reference = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=64)
    explanation = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # The reviewer's decision that answered it (none when the engine's removal did).
    decision = models.ForeignKey("ReviewDecision", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["post", "created_at"], name="moderation_notice_post")]

    def __str__(self) -> str:
        return f"{self.reporter_type} notice on {self.post_id}"


class Appeal(models.Model):
    """An author's complaint against a restricting decision (DSA Art. 20) and how it was decided.

    ``decided_by`` took no part in the decision appealed; an overturn's ``review_decision`` is the
    ``not_violating`` ledger row that restores the post and serves as its retraining label.
    """

    class Decision(models.TextChoices):
        UPHOLD = "uphold"
        OVERTURN = "overturn"
        MOOT = "moot"  # closed without a judgment: the decision appealed was withdrawn (undone) meanwhile

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by (post, created_at) below.
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="appeals", db_index=False)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                               db_index=False)
    statement = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # What was appealed: the statement of reasons' puid and source, kept as they were then.
    restriction_puid = models.CharField(max_length=128)
    restriction_category = models.CharField(max_length=64, blank=True)
    restriction_automated = models.BooleanField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_by_username = models.CharField(max_length=150, blank=True)
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    note = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    review_decision = models.OneToOneField("ReviewDecision", null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="appeal")

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["post", "created_at"], name="moderation_appeal_post"),
                   models.Index(fields=["decided_at"], name="moderation_appeal_decided")]
        constraints = [models.UniqueConstraint(fields=["post"], condition=models.Q(decided_at__isnull=True),
                                               name="moderation_appeal_one_open")]

    def __str__(self) -> str:
        return f"appeal on {self.post_id} ({self.decision or 'open'})"


class StatementExport(models.Model):
    """A restricting decision's statement of reasons as exported to the DSA Transparency Database.

    Made once per decision, the first time an export or the submitter meets it, and never deleted
    by the app: ``puid`` is unique forever and the same on every re-export, ``statement`` is the
    text as first exported. ``state`` says whether the database has accepted it; one accepted is
    never sent again.
    """

    class State(models.TextChoices):
        PENDING = "pending"  # not accepted yet; sent when due
        SUBMITTED = "submitted"  # accepted by the database (or already there under this puid)
        FAILED = "failed"  # every retry failed (network, 5xx); an export with --submit sends it again
        REFUSED = "refused"  # the database refused it (4xx), with its answer in last_error

    puid = models.CharField(max_length=500, unique=True)
    post = models.ForeignKey(Post, null=True, on_delete=models.SET_NULL, related_name="statement_exports")
    # The decision: the engine's removal (its analysis) or a reviewer's violating decision.
    analysis = models.OneToOneField(Analysis, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="statement_export")
    review_decision = models.OneToOneField(ReviewDecision, null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="statement_export")
    restricted_at = models.DateTimeField()
    statement = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # The database's own id of the statement, from its answer.
    database_uuid = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["restricted_at", "id"]
        indexes = [models.Index(fields=["restricted_at"], name="moderation_statement_time"),
                   models.Index(fields=["state", "next_attempt_at"], name="moderation_statement_due")]

    def __str__(self) -> str:
        return f"statement {self.puid} ({self.state})"


class Bank(models.Model):
    """A named list of PDQ hashes of known content, and what a match does to a post.

    A bank without a client belongs to the site (leads manage it in the admin) and applies to
    every client's posts; a client's bank applies to its own posts only. ``purpose`` marks the
    banks reviewers' decisions fill (one of each per client).
    """

    class Purpose(models.TextChoices):
        MANUAL = "", "managed by hand or import"
        REVIEWED_VIOLATING = "reviewed_violating", "reviewers' violating decisions"
        REVIEWED_ALLOWED = "reviewed_allowed", "reviewers' not-violating decisions"

    name = models.CharField(max_length=100)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="moderation_banks", help_text="Empty: a site bank, for every client.")
    action = models.CharField(max_length=8, choices=Decision.choices, default=Decision.REMOVE)
    threshold = models.PositiveSmallIntegerField(default=31, help_text="Largest PDQ distance (bits) that matches.")
    enabled = models.BooleanField(default=True)
    purpose = models.CharField(max_length=24, choices=Purpose.choices, default=Purpose.MANUAL, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="moderation_bank_unique_name"),
            models.UniqueConstraint(fields=["name"], condition=Q(client__isnull=True),
                                    name="moderation_bank_unique_site_name"),
            models.UniqueConstraint(fields=["client", "purpose"], condition=~Q(purpose=""),
                                    name="moderation_bank_one_per_purpose"),
            models.CheckConstraint(condition=Q(threshold__lte=256), name="moderation_bank_threshold_bits"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'site' if self.client_id is None else self.client})"


class BankEntry(models.Model):
    """One hash in a bank, with where it came from; a reviewer's decision names itself here."""

    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="entries")
    pdq_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=255, blank=True)
    note = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    added_at = models.DateTimeField(default=timezone.now)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    # Set when a reviewer's decision put the hash here; an undo of that decision removes the entry.
    review_decision = models.ForeignKey(ReviewDecision, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="bank_entries")

    class Meta:
        ordering = ["-added_at", "-id"]
        verbose_name_plural = "bank entries"
        constraints = [
            models.UniqueConstraint(fields=["bank", "pdq_hash"], name="moderation_bankentry_unique_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.pdq_hash[:16]}… in {self.bank.name}"


# Embedding sizes that get an HNSW index: CLIP ViT-B (512), ViT-L (768), ViT-H (1024).
SEARCH_INDEX_DIMENSIONS = (512, 768, 1024)


def search_index_hnsw(dimensions: int) -> HnswIndex:
    """The HNSW (cosine) index over the rows of one embedding size: an expression index on the
    column cast to ``vector(dimensions)``, partial on ``dimensions``, as pgvector indexes a
    column that holds vectors of several sizes."""
    return HnswIndex(OpClass(Cast("embedding", VectorField(dimensions=dimensions)), name="vector_cosine_ops"),
                     condition=Q(dimensions=dimensions), name=f"moderation_search_hnsw_{dimensions}",
                     m=16, ef_construction=64)


class SearchEmbedding(models.Model):
    """The image embedding of a post's current analysis, in a pgvector column for HNSW search.

    Exists only on PostgreSQL with pgvector (migration 0023 creates the table where the extension
    does); elsewhere search reads ``Analysis.image_embedding``. Written with the analysis, deleted
    with the post by the database (``ON DELETE CASCADE``, added by the migration). The relations
    have no Django-side constraint or cascade on purpose: Django would otherwise query this table
    on databases that do not have it whenever a post or user is deleted.
    """

    post = models.OneToOneField(Post, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                related_name="+")
    analysis = models.ForeignKey(Analysis, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                                 related_name="+")
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False,
                               db_index=False, related_name="+")
    clip_version = models.CharField(max_length=255)  # only embeddings of one CLIP are comparable
    dimensions = models.PositiveSmallIntegerField()
    embedding = VectorField()  # no fixed size: one table for every CLIP; each size has its own index

    class Meta:
        indexes = [models.Index(fields=["client", "clip_version", "dimensions"], name="moderation_search_client"),
                   *(search_index_hnsw(d) for d in SEARCH_INDEX_DIMENSIONS)]
