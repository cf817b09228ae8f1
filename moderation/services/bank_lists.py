"""Hash lists in the formats HMA and ThreatExchange's tools read and write.

- **Signal file** (ThreatExchange's ``LocalFileSignalExchangeAPI``, which HMA's file exchange
  and ``threatexchange dataset -P -s`` share): one signal per line, ``pdq <64 hex>``, or the
  bare hash when the file holds only PDQ. Anything after the hash on the line is kept as the
  entry's note (``threatexchange dataset -P`` appends the collaboration and metadata there).
- **Dataset CSV** (``threatexchange dataset -P --csv``): a header
  ``signal_type,signal_str,collab,category,tags`` and one row per signal; ``tags`` becomes the
  note. Export writes ``collab`` as the bank's name and ``category`` as ``POSITIVE_CLASS``
  (``NEGATIVE_CLASS`` for an ``allow`` bank, ThreatExchange's word for known-benign content).

Blank lines and lines starting with ``#`` are skipped. Only PDQ signals are accepted.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Iterable

from vlm_engine.pdq import PDQ_HEX_LENGTH, PdqHashInvalid, pdq_hex_parse

SIGNAL_TYPE = "pdq"
CSV_FIELDS = ["signal_type", "signal_str", "collab", "category", "tags"]
FORMATS = ("te", "csv")
_SIGNAL_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*", re.IGNORECASE)


@dataclass(frozen=True)
class ListedHash:
    line: int
    pdq_hash: str
    note: str


@dataclass(frozen=True)
class ListError:
    line: int
    message: str


def hash_list_parse(text: str) -> tuple[list[ListedHash], list[ListError]]:
    """Every hash of a list with its line number, and every refused line with the reason."""
    text = text.lstrip("\ufeff")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.strip().lower().startswith("signal_type,"):
        return _csv_parse(text)
    listed, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            listed.append(_line_parse(line, number))
        except ValueError as exc:
            errors.append(ListError(line=number, message=str(exc)))
    return listed, errors


def _line_parse(line: str, number: int) -> ListedHash:
    parts = line.split(None, 1)
    if parts[0].lower() == SIGNAL_TYPE and len(parts) == 2:
        parts = parts[1].split(None, 1)
    elif len(parts) == 2 and _SIGNAL_TYPE_NAME.fullmatch(parts[0]) and len(parts[0]) != PDQ_HEX_LENGTH:
        raise ValueError(f"signal type {parts[0][:40]!r} is not {SIGNAL_TYPE}")
    return ListedHash(line=number, pdq_hash=_hash(parts[0]), note=parts[1].strip() if len(parts) == 2 else "")


def _hash(value: str) -> str:
    try:
        return pdq_hex_parse(value)
    except PdqHashInvalid as exc:
        raise ValueError(str(exc))


def _csv_parse(text: str) -> tuple[list[ListedHash], list[ListError]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"signal_type", "signal_str"} - set(reader.fieldnames or [])
    if missing:
        return [], [ListError(line=1, message=f"the header lacks {', '.join(sorted(missing))}")]
    listed, errors = [], []
    for row in reader:
        number = reader.line_num
        kind = (row.get("signal_type") or "").strip().lower()
        try:
            if kind != SIGNAL_TYPE:
                raise ValueError(f"signal type {kind[:40]!r} is not {SIGNAL_TYPE}")
            listed.append(ListedHash(line=number, pdq_hash=_hash(row.get("signal_str") or ""),
                                     note=(row.get("tags") or "").strip()))
        except ValueError as exc:
            errors.append(ListError(line=number, message=str(exc)))
    return listed, errors


def hash_list_write(*, hashes: Iterable[str], fmt: str, collab: str, benign: bool) -> str:
    """A list other tools read: ``te`` (signal file) or ``csv`` (dataset CSV)."""
    if fmt == "te":
        return "".join(f"{SIGNAL_TYPE} {h}\n" for h in hashes)
    if fmt != "csv":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    category = "NEGATIVE_CLASS" if benign else "POSITIVE_CLASS"
    writer.writerows({"signal_type": SIGNAL_TYPE, "signal_str": h, "collab": collab, "category": category,
                      "tags": ""} for h in hashes)
    return out.getvalue()
