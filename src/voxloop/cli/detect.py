"""CLI commands of the detect domain."""

from __future__ import annotations

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the detect commands to the CLI."""
