"""Runs a write endpoint under an ``Idempotency-Key``: replay, conflict, or handle and store."""
from __future__ import annotations

from typing import Callable

from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.errors import api_exception_handler
from moderation.errors import ServiceError
from moderation.services.idempotency import (idempotency_atomic, idempotency_begin, idempotency_complete,
                                             idempotency_crash_point, idempotency_request_hash)


def _request_hash(request: Request) -> str:
    fields = {k: v for k, v in request.data.items() if k != "image"}
    upload = request.FILES.get("image")
    data = None
    if upload is not None:
        data = upload.read()
        upload.seek(0)
    return idempotency_request_hash(fields=fields, file_bytes=data)


def idempotent_response(*, request: Request, key: str, handler: Callable[[Request], Response]) -> Response:
    """Handle ``request`` once per key: the work and its stored response commit together."""
    client, request_hash = request.user, _request_hash(request)
    with idempotency_atomic():
        stored = idempotency_begin(client=client, key=key, request_hash=request_hash)
        if stored is not None:
            return Response(stored.body, status=stored.status, headers={"Idempotent-Replayed": "true"})
        idempotency_crash_point(step="reserved", key=key)
        response = _handled(request, handler)
        idempotency_crash_point(step="inserted", key=key)
        idempotency_complete(client=client, key=key, request_hash=request_hash,
                             status=response.status_code, body=response.data)
    idempotency_crash_point(step="completed", key=key)
    return response


def _handled(request: Request, handler: Callable[[Request], Response]) -> Response:
    try:
        return handler(request)
    except (ServiceError, APIException) as exc:
        # A refusal is an answer too: the same request will always get it.
        response = api_exception_handler(exc, {"request": request})
        assert response is not None
        return response
