"""Errors of the services and selectors, each with a stable code the API reports as-is."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal the caller can show to the client: a stable code, a message, an HTTP status."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404
