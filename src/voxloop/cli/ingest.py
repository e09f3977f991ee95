"""CLI commands of the ingest domain."""

from __future__ import annotations

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the ingest commands to the CLI."""
