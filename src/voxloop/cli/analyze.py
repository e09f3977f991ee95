"""CLI commands of the analyze domain."""

from __future__ import annotations

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the analyze commands to the CLI."""
