"""A client's own hash banks: create and edit them, add and remove hashes, import and export lists."""
from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi, BoundedJSONParser
from moderation.models import Bank, BankEntry, Decision
from moderation.selectors.banks import bank_entry_get, bank_get, bank_list
from moderation.services.bank_lists import FORMATS
from moderation.services.banks import (bank_create, bank_delete, bank_entry_add, bank_entry_remove, bank_export,
                                       bank_import, bank_update)
from moderation.errors import ServiceError
from vlm_engine.pdq import PDQ_BITS

BANK_FIELD_CODES = {"name": "bank_invalid", "action": "bank_invalid", "threshold": "bank_invalid",
                    "enabled": "bank_invalid", "description": "bank_invalid"}
BANK_ID = OpenApiParameter("bank_id", OpenApiTypes.INT, OpenApiParameter.PATH)
ENTRY_ID = OpenApiParameter("entry_id", OpenApiTypes.INT, OpenApiParameter.PATH)
MAX_IMPORT_CHARS = 8 * 1024 * 1024  # about 120,000 lines of "pdq <hash>"


class StrictCharField(serializers.CharField):
    """JSON strings only: DRF's CharField would turn 0 into "0"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictHashField(serializers.RegexField):
    """A JSON string of 64 hex digits (the pattern is in the OpenAPI document)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(r"^\s*[0-9a-fA-F]{64}\s*$", **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictIntegerField(serializers.IntegerField):
    """JSON integers only (not "31", 31.0 or true)."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only (not "yes" or 1)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


# An inline enum: the same choices are the posts' ``decision`` component, and drf-spectacular
# warns when one choice set gets two component names.
@extend_schema_field({"type": "string", "enum": list(Decision.values)})
class ActionField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=Decision.choices, **kwargs)


class BankOutputSerializer(serializers.ModelSerializer):
    entries = serializers.IntegerField(source="entries.count", read_only=True)
    action = ActionField()

    class Meta:
        model = Bank
        fields = ["id", "name", "action", "threshold", "enabled", "purpose", "description", "entries", "created_at"]


class EntryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = BankEntry
        fields = ["id", "pdq_hash", "source", "note", "enabled", "added_at", "review_decision"]


class BankInputSerializer(serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=100)
    action = ActionField(default=Decision.REMOVE)
    threshold = StrictIntegerField(min_value=0, max_value=PDQ_BITS, default=31,
                                   help_text="Largest PDQ distance (bits) that matches.")
    enabled = StrictBooleanField(default=True)
    description = StrictCharField(allow_blank=True, default="", max_length=2000)

    class Meta:
        ref_name = "BankInput"


class BankPatchSerializer(BankInputSerializer):
    class Meta:
        ref_name = "BankPatch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class BanksApi(BaseApi):
    parser_classes = [BoundedJSONParser]
    error_statuses = (409,)
    field_codes = BANK_FIELD_CODES

    @extend_schema(responses=BankOutputSerializer(many=True), operation_id="banks_list")
    def get(self, request: Request) -> Response:
        return Response(BankOutputSerializer(bank_list(client=request.user), many=True).data)

    @extend_schema(request=BankInputSerializer, responses={201: BankOutputSerializer}, operation_id="banks_create")
    def post(self, request: Request) -> Response:
        bank = bank_create(client=request.user, **self.body_validated(BankInputSerializer, request.data))
        return Response(BankOutputSerializer(bank).data, status=status.HTTP_201_CREATED)


class BankDetailApi(BaseApi):
    parser_classes = [BoundedJSONParser]
    error_statuses = (409,)
    field_codes = BANK_FIELD_CODES

    @extend_schema(responses=BankOutputSerializer, operation_id="banks_retrieve", parameters=[BANK_ID])
    def get(self, request: Request, bank_id: str) -> Response:
        return Response(BankOutputSerializer(bank_get(client=request.user, bank_id=bank_id)).data)

    @extend_schema(request=BankPatchSerializer, responses=BankOutputSerializer, operation_id="banks_update",
                   parameters=[BANK_ID])
    def patch(self, request: Request, bank_id: str) -> Response:
        bank = bank_get(client=request.user, bank_id=bank_id)
        bank = bank_update(bank=bank, **self.body_validated(BankPatchSerializer, request.data))
        return Response(BankOutputSerializer(bank).data)

    @extend_schema(responses={204: None}, operation_id="banks_destroy", parameters=[BANK_ID])
    def delete(self, request: Request, bank_id: str) -> Response:
        bank_delete(bank=bank_get(client=request.user, bank_id=bank_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BankEntriesApi(BaseApi):
    parser_classes = [BoundedJSONParser]
    error_statuses = (409,)
    field_codes = {"pdq_hash": "hash_invalid", "note": "invalid"}

    class InputSerializer(serializers.Serializer):
        pdq_hash = StrictHashField(help_text="64 hexadecimal digits.")
        note = StrictCharField(allow_blank=True, default="", max_length=2000)

        class Meta:
            ref_name = "BankEntryInput"

    @extend_schema(responses=EntryOutputSerializer(many=True), operation_id="bank_entries_list",
                   parameters=[BANK_ID])
    def get(self, request: Request, bank_id: str) -> Response:
        bank = bank_get(client=request.user, bank_id=bank_id)
        return Response(EntryOutputSerializer(bank.entries.order_by("id"), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: EntryOutputSerializer}, operation_id="bank_entries_add",
                   parameters=[BANK_ID])
    def post(self, request: Request, bank_id: str) -> Response:
        bank = bank_get(client=request.user, bank_id=bank_id)
        data = self.body_validated(self.InputSerializer, request.data)
        entry = bank_entry_add(bank=bank, source="api", added_by=request.user, **data)
        return Response(EntryOutputSerializer(entry).data, status=status.HTTP_201_CREATED)


class BankEntryDetailApi(BaseApi):
    @extend_schema(responses={204: None}, operation_id="bank_entries_destroy", parameters=[BANK_ID, ENTRY_ID])
    def delete(self, request: Request, bank_id: str, entry_id: str) -> Response:
        entry = bank_entry_get(bank=bank_get(client=request.user, bank_id=bank_id), entry_id=entry_id)
        bank_entry_remove(entry=entry)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BankImportApi(BaseApi):
    """A hash list as the JSON field ``content``: a ThreatExchange signal file or dataset CSV."""

    parser_classes = [BoundedJSONParser]
    field_codes = {"content": "hash_list_invalid"}

    class InputSerializer(serializers.Serializer):
        content = StrictCharField(min_length=1, max_length=MAX_IMPORT_CHARS, trim_whitespace=False,
                                        help_text="Lines of `pdq <hash>` (or bare hashes), or a dataset CSV.")

        class Meta:
            ref_name = "BankImportInput"

    class OutputSerializer(serializers.Serializer):
        added = serializers.IntegerField()
        already_present = serializers.IntegerField()

        class Meta:
            ref_name = "BankImportResult"

    @extend_schema(request=InputSerializer, responses=OutputSerializer, operation_id="bank_import",
                   parameters=[BANK_ID])
    def post(self, request: Request, bank_id: str) -> Response:
        bank = bank_get(client=request.user, bank_id=bank_id)
        data = self.body_validated(self.InputSerializer, request.data)
        result = bank_import(bank=bank, text=data["content"], source="api import", added_by=request.user)
        return Response({"added": result.added, "already_present": result.already_present})


class BankExportApi(BaseApi):
    # Not "format": DRF reads that one to pick a renderer.
    query_parameters = frozenset({"list_format"})

    @extend_schema(operation_id="bank_export", parameters=[BANK_ID, OpenApiParameter("list_format", str, enum=FORMATS)],
                   responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR),
                              (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)})
    def get(self, request: Request, bank_id: str) -> HttpResponse:
        bank = bank_get(client=request.user, bank_id=bank_id)
        fmt = request.query_params.get("list_format", "te")
        if fmt not in FORMATS:
            raise ServiceError("format_invalid", f"list_format must be one of {', '.join(FORMATS)}.")
        content_type = "text/csv" if fmt == "csv" else "text/plain"
        return HttpResponse(bank_export(bank=bank, fmt=fmt), content_type=f"{content_type}; charset=utf-8")
