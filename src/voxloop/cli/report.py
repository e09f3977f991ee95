"""CLI commands of the report domain: ``voxloop report`` (monthly or ad-hoc, PDF or HTML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voxloop.errors import VoxloopError


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the report commands to the CLI."""

    @app.command("report")
    def report_command(
        out: Annotated[Path, typer.Argument(help="File to write (the PDF or HTML report).")],
        period: Annotated[str, typer.Option("--period", help="Month YYYY-MM, e.g. 2026-10.")],
        region: Annotated[
            str | None, typer.Option("--region", help="Province or province/city (default all).")
        ] = None,
        lang: Annotated[str, typer.Option("--lang", help="zh-CN or en.")] = "zh-CN",
        fmt: Annotated[str, typer.Option("--format", help="pdf or html.")] = "pdf",
        store: Annotated[
            bool, typer.Option("--store", help="Also add it to the stored reports (/reports).")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
    ) -> None:
        """Render the monthly report of PERIOD (headline KPIs vs the previous month, volumes,
        surges, problems, commitments, drivers, segments, churn, work orders, verification)."""
        from voxloop.config import load_settings
        from voxloop.store.service import make_engine, make_sessionmaker, migrate
        from voxloop.web import report, report_data

        settings = load_settings()
        request = report.ReportRequest(period=period, region=region, lang=lang, format=fmt)
        try:
            migrate(settings)
            engine = make_engine(settings)
            try:
                with make_sessionmaker(engine)() as session:
                    document, facts = report.build_report(
                        settings=settings, session=session, request=request
                    )
            finally:
                engine.dispose()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(document)
            if store:
                report.store_report(
                    settings=settings, request=request, document=document, created_by="cli"
                )
        except VoxloopError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(report_data.dumps(facts))
        else:
            typer.echo(
                json.dumps(
                    {
                        "out": str(out),
                        "bytes": len(document),
                        "period": facts["period"],
                        "region": facts["region"],
                        "voices": facts["volumes"]["voices"],
                    },
                    ensure_ascii=False,
                )
            )
