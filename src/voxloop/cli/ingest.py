"""CLI commands of the ingest domain: ``voxloop ingest`` and ``voxloop quarantine``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voxloop.config import load_settings
from voxloop.errors import VoxloopError


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the ingest commands to the CLI."""

    @app.command("ingest")
    def ingest(
        path: Annotated[Path, typer.Argument(help="File or folder to ingest.")],
        kind: Annotated[
            str | None,
            typer.Option(help="voice, survey, customer or event (default: from the file name)."),
        ] = None,
        mapping: Annotated[
            Path | None, typer.Option(help="YAML mapping for a foreign file's columns.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        pipeline: Annotated[
            bool, typer.Option(help="Run the post-ingest stages when rows were stored.")
        ] = True,
    ) -> None:
        """Ingest CSV/JSONL/Parquet/XLSX files; every row is stored, quarantined or a duplicate."""
        from voxloop.ingest.schemas import RecordKind
        from voxloop.ingest.service import ingest_path
        from voxloop.pipeline.service import run_stages

        settings = load_settings()
        try:
            record_kind = RecordKind(kind) if kind else None
        except ValueError:
            typer.echo(
                f"error: unknown --kind {kind!r}; use voice, survey, customer or event", err=True
            )
            raise typer.Exit(2) from None
        try:
            result = ingest_path(settings=settings, path=path, kind=record_kind, mapping=mapping)
        except VoxloopError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        counts = {
            "read": result.read,
            "stored": result.stored,
            "quarantined": result.quarantined,
            "duplicates": result.duplicates,
        }
        if as_json:
            typer.echo(json.dumps(counts))
        else:
            typer.echo(
                f"read {result.read}, stored {result.stored}, quarantined {result.quarantined}, "
                f"duplicates {result.duplicates}"
            )
            if result.quarantined:
                typer.echo("see `voxloop quarantine` for the rows that were not stored")
        if result.stored and pipeline:
            summary = run_stages(settings=settings)
            if summary and not as_json:
                for name, value in summary.items():
                    typer.echo(f"{name}: {value}")

    @app.command("quarantine")
    def quarantine(
        as_json: Annotated[bool, typer.Option("--json")] = False,
        limit: Annotated[int, typer.Option(min=1)] = 50,
    ) -> None:
        """List quarantined rows: file, row, field and reason."""
        from voxloop.ingest.service import list_quarantine

        total, rows = list_quarantine(settings=load_settings(), limit=limit)
        if as_json:
            typer.echo(json.dumps({"total": total, "items": rows}, ensure_ascii=False))
            return
        typer.echo(f"{total} quarantined rows (showing {len(rows)})")
        for r in rows:
            typer.echo(
                f"{r['source_file']}:{r['source_row']}  [{r['field'] or '-'}]  {r['reason']}"
            )
