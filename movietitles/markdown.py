"""Markdown tables, for reports and TensorBoard's Text dashboard."""

from __future__ import annotations

from typing import Any, Sequence


def cell(value: Any) -> str:
    """One table cell: a float with 3 decimals; `|` escaped and line breaks flattened so it stays one cell."""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text.replace("|", r"\|").replace("\n", " ")


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], numbers: bool = True) -> str:
    """A markdown table; with `numbers`, every column after the first is right-aligned."""
    align = ["---"] + ["---:" if numbers else "---"] * (len(header) - 1)
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
