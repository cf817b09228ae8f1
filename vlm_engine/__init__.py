"""Vision-language engine: scores image+text posts against a moderation policy, without Django."""

from __future__ import annotations
