"""``manage.py moderation_export_dataset DIR``: the labelled set as JSONL plus images, for offline work."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from moderation.selectors.learning import embedding_from_bytes, standing_decisions


class Command(BaseCommand):
    help = ("Write DIR/labels.jsonl (one reviewed post per line, with the embeddings the reviewer's analysis "
            "stored) and DIR/images/<post id>.jpg.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory")

    def handle(self, *args: Any, directory: str, **options: Any) -> None:
        out = Path(directory)
        (out / "images").mkdir(parents=True, exist_ok=True)
        count = 0
        with (out / "labels.jsonl").open("w") as lines:
            for decision in standing_decisions():
                lines.write(json.dumps(self._row(decision, out)) + "\n")
                count += 1
        self.stdout.write(f"Wrote {count} labelled posts to {out}.")

    @staticmethod
    def _row(decision: Any, out: Path) -> dict[str, Any]:
        post = decision.post
        image = None
        if post.image:
            image = f"images/{post.pk}.jpg"
            with post.image.open("rb") as src:
                (out / image).write_bytes(src.read())
        return {"post_id": str(post.pk), "text": post.text, "image": image, "verdict": decision.verdict,
                "category": decision.category or None, "reason": decision.reason,
                "reviewer": decision.reviewer_username, "decided_at": decision.created_at.isoformat(),
                "analysis_scores": decision.analysis.scores if decision.analysis else None,
                "model_version": decision.analysis.model_version if decision.analysis else None,
                "embeddings": _embeddings(decision.analysis)}


def _embeddings(analysis: Any) -> dict[str, list[float] | None]:
    """The analysis' CLIP image and text and the text role's sentence embeddings (None: not stored)."""
    blobs = {"image": None, "text": None, "sentence": None}
    if analysis is not None:
        blobs = {"image": analysis.image_embedding, "text": analysis.text_embedding,
                 "sentence": analysis.sentence_embedding}
    return {name: None if (row := embedding_from_bytes(blob)) is None else [float(v) for v in row]
            for name, blob in blobs.items()}
