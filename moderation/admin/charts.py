"""Server-rendered SVG charts: geometry computed here, markup in ``moderation/admin/chart.svg.html``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

LABEL_WIDTH = 140
VALUE_WIDTH = 60
ROW_HEIGHT = 22
COLUMN_AREA = 150  # pixel height of the tallest column


@dataclass(frozen=True)
class Bar:
    label: str
    text: str  # the value as shown
    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> float:
        return self.x + self.width / 2

    @property
    def value_x(self) -> float:
        return self.x + self.width + 4

    @property
    def text_y(self) -> float:
        return self.y + self.height - 3


@dataclass(frozen=True)
class Chart:
    title: str
    kind: str  # "rows" (horizontal bars) or "columns"
    width: int
    height: int
    bars: tuple[Bar, ...]


def chart_rows(*, title: str, rows: Sequence[tuple[str, float]], texts: Sequence[str] | None = None,
               width: int = 560, max_value: float | None = None) -> Chart:
    """Horizontal bars, one row per item, scaled to the largest value (or ``max_value``)."""
    top = max_value or max((v for _, v in rows), default=0) or 1
    span = width - LABEL_WIDTH - VALUE_WIDTH
    bars = tuple(Bar(label=str(label), text=texts[i] if texts else f"{value:g}", x=LABEL_WIDTH,
                     y=i * ROW_HEIGHT + 4, width=span * value / top, height=ROW_HEIGHT - 8)
                 for i, (label, value) in enumerate(rows))
    return Chart(title=title, kind="rows", width=width, height=max(len(rows), 1) * ROW_HEIGHT, bars=bars)


def chart_columns(*, title: str, rows: Sequence[tuple[str, float]], width: int = 560) -> Chart:
    """Vertical columns (a time series), labels under each column."""
    top = max((v for _, v in rows), default=0) or 1
    step = width / max(len(rows), 1)
    bars = tuple(Bar(label=str(label), text=f"{value:g}", x=i * step + 2, y=COLUMN_AREA - COLUMN_AREA * value / top
                     + 14, width=step - 4, height=COLUMN_AREA * value / top)
                 for i, (label, value) in enumerate(rows))
    return Chart(title=title, kind="columns", width=width, height=COLUMN_AREA + 34, bars=bars)
