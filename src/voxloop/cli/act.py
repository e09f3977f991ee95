"""CLI commands of the act domain."""

from __future__ import annotations

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the act commands to the CLI."""
