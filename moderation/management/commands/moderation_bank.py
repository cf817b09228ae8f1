"""``manage.py moderation_bank import|export``: move hash lists between a bank and HMA / ThreatExchange files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from moderation.models import Bank
from moderation.services.bank_lists import FORMATS
from moderation.services.banks import bank_export, bank_import
from moderation.errors import ServiceError


class Command(BaseCommand):
    help = ("Import a hash list into a bank (a ThreatExchange signal file, `pdq <hash>` per line, or a "
            "`threatexchange dataset --csv` file; `-` reads stdin), or export a bank's enabled hashes.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=["import", "export"])
        parser.add_argument("bank", help="the bank's id, or the name of a site bank")
        parser.add_argument("path", help="file to read or write; - for stdin/stdout")
        parser.add_argument("--format", choices=FORMATS, default="te", dest="list_format",
                            help="export only: te (signal file) or csv (dataset CSV)")

    def handle(self, *args: Any, operation: str, bank: str, path: str, list_format: str, **options: Any) -> None:
        target = _bank(bank)
        if operation == "export":
            text = bank_export(bank=target, fmt=list_format)
            (self.stdout.write(text, ending="") if path == "-" else Path(path).write_text(text))
            return
        text = sys.stdin.read() if path == "-" else _read(path)
        try:
            result = bank_import(bank=target, text=text, source=f"import:{Path(path).name}")
        except ServiceError as exc:
            for error in exc.details or []:
                self.stderr.write(f"{path}:{error['line']}: {error['message']}")
            raise CommandError(exc.message)
        self.stdout.write(f"Imported {result.added} hash(es) into {target.name}; "
                          f"{result.already_present} were there already.")


def _bank(value: str) -> Bank:
    found = Bank.objects.filter(pk=int(value)) if value.isdigit() else Bank.objects.filter(
        name=value, client__isnull=True)
    bank = found.first()
    if bank is None:
        raise CommandError(f"No bank {value!r} (give an id, or the name of a site bank).")
    return bank


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read {path}: {exc}")
