"""Store-backed analyses (lake → drivers, segments, journeys, churn) and their text form."""

from __future__ import annotations

from typing import Any


def format_text(result: dict[str, Any]) -> str:
    """Render an analysis or evaluation result as aligned ``key: value`` lines."""
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend(f"  {_row(item)}" for item in value)
        elif isinstance(value, float):
            lines.append(f"{key:>24}: {value:.4f}")
        else:
            lines.append(f"{key:>24}: {value}")
    return "\n".join(lines)


def _row(item: dict[str, Any]) -> str:
    parts = []
    for key, value in item.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, list | dict):
            continue
        else:
            parts.append(f"{key}={value}")
    return "  ".join(parts)
