"""CLI command that writes the realistic demo operator (``voxloop generate``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the ``generate`` command to the CLI."""

    @app.command()
    def generate(
        out_dir: Annotated[Path, typer.Argument(help="Folder to write the flat files into.")],
        customers: Annotated[int, typer.Option(min=200, help="Number of customers.")] = 20_000,
        days: Annotated[int, typer.Option(min=14, help="Days of activity to simulate.")] = 60,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 7,
        start: Annotated[
            str | None,
            typer.Option(help="First day, ISO-8601; naive means Asia/Shanghai local time."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Generate a demo operator: customers, voices, surveys, events and ground truth."""
        from voxloop.demo.generator import DEFAULT_START, generate_operator

        try:
            first = datetime.fromisoformat(start) if start else DEFAULT_START
        except ValueError as exc:
            raise typer.BadParameter(f"--start {start!r} is not ISO-8601: {exc}") from exc
        summary = generate_operator(
            customers=customers, days=days, seed=seed, out_dir=out_dir, start=first
        )
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))
            return
        typer.echo(
            f"wrote {summary['customers']} customers, {summary['voices']} voices, "
            f"{summary['surveys']} surveys, {summary['events']} events to {out_dir} "
            f"in {summary['seconds']} s"
        )
        typer.echo(f"planted incidents: {', '.join(summary['incidents'])}")
        typer.echo(f"planted problems: {summary['problems']}")
        typer.echo(
            f"churn journeys: {summary['churn_customers']} planted, "
            f"{summary['background_churn_customers']} background"
        )
        typer.echo(f"commitment violations: {summary['violations']}")
        typer.echo(f"ground truth: {Path(out_dir) / 'ground_truth.json'}")
