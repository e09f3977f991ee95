"""CLI commands of the understand domain."""

from __future__ import annotations

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the understand commands to the CLI."""
