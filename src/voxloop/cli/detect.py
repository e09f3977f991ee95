"""CLI commands of the detect domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voxloop.errors import VoxloopError


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the detect commands to the CLI."""
    detect_app = typer.Typer(no_args_is_help=True, help="Surge alerts, problems, webhooks.")
    app.add_typer(detect_app, name="detect")

    @detect_app.command("outbox")
    def outbox(
        retry: Annotated[
            list[int] | None,
            typer.Option("--retry", help="Re-queue this dead letter (repeatable)."),
        ] = None,
        retry_all: Annotated[
            bool, typer.Option("--retry-all", help="Re-queue every dead letter.")
        ] = False,
        dead: Annotated[bool, typer.Option("--dead", help="List dead letters only.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """List undelivered webhook messages (pending, dead) or re-queue dead letters."""
        import logging

        from voxloop.act.service import audit
        from voxloop.config import load_settings
        from voxloop.detect.notify import outbox_messages, retry_outbox
        from voxloop.store.service import make_engine, make_sessionmaker

        if retry and retry_all:
            typer.echo("error: use --retry ID or --retry-all, not both", err=True)
            raise typer.Exit(2)
        # Re-queueing is an operator action: it is logged and written to the audit log.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        sessions = make_sessionmaker(make_engine(load_settings()))
        if retry or retry_all:
            try:
                with sessions.begin() as session:
                    ids = retry_outbox(
                        session=session,
                        audit=audit,
                        ids=None if retry_all else list(retry or []),
                        actor=f"cli:{_os_user()}",
                    )
            except VoxloopError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from exc
            if as_json:
                typer.echo(json.dumps({"requeued": ids}))
            else:
                typer.echo(f"re-queued {len(ids)} message(s): {', '.join(map(str, ids)) or '-'}")
            return
        with sessions() as session:
            entries = outbox_messages(session=session, dead_only=dead)
        if as_json:
            rows = [
                {
                    "id": e.id,
                    "alert_id": e.alert_id,
                    "event": e.event,
                    "url": e.url,
                    "attempts": e.attempts,
                    "status": "dead" if e.dead else "pending",
                    "next_attempt_at": e.next_attempt_at.isoformat(),
                    "last_error": e.last_error,
                }
                for e in entries
            ]
            typer.echo(json.dumps({"messages": rows}, ensure_ascii=False))
            return
        if not entries:
            typer.echo("outbox empty: every message was delivered")
            return
        typer.echo(f"{'id':>6} {'status':<8} {'attempts':>8} {'alert':>6}  last error")
        for e in entries:
            status = "dead" if e.dead else "pending"
            typer.echo(
                f"{e.id:>6} {status:<8} {e.attempts:>8} {e.alert_id:>6}  {e.last_error or '-'}"
            )

    @evaluate.command("nab")
    def evaluate_nab(
        data: Annotated[Path, typer.Option(help="NAB folder (data/, labels/).")] = Path(
            "../shared/data/nab"
        ),
        detector: Annotated[str, typer.Option(help="Detector name.")] = "context_ensemble",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Score a detector on the Numenta Anomaly Benchmark with NAB's scoring."""
        from voxloop.detect.service import evaluate_nab as run_nab

        try:
            results = run_nab(data_dir=data, detector=detector)
        except (VoxloopError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps({k: round(r.normalised, 4) for k, r in results.items()}))
            return
        typer.echo(f"NAB v1.1 corpus, detector {detector}")
        typer.echo(f"{'profile':>10} {'score':>8} {'raw':>9} {'threshold':>10}")
        for name, res in results.items():
            typer.echo(f"{name:>10} {res.normalised:8.2f} {res.raw:9.3f} {res.threshold:10.4f}")

    @evaluate.command("incidents")
    def evaluate_incidents(
        data: Annotated[Path, typer.Option(help="Generated operator folder.")],
        granularity: Annotated[str, typer.Option(help="5min, hour or day.")] = "hour",
        detector: Annotated[str, typer.Option(help="Surge detector name.")] = "seasonal_nb",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Check surge alerts and root causes against a generator's ground_truth.json."""
        from voxloop.detect.evaluation import evaluate_incidents as run_incidents

        try:
            report = run_incidents(data_dir=data, granularity=granularity, detector=detector)
        except (VoxloopError, ValueError, KeyError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False))
            return
        for inc in report["incidents"]:
            typer.echo(
                f"{inc['id']}: alerted={inc['alerted']} delay={inc['delay_hours']}h "
                f"root_cause={inc['root_cause']} exact={inc['root_cause_exact']}"
            )
        typer.echo(
            f"alerts={report['alerts']} false={report['false_alerts']} "
            f"({report['false_alerts_per_1000_series_days']:.3f} per 1000 series-days)"
        )

    @evaluate.command("problems")
    def evaluate_problems(
        data: Annotated[Path, typer.Option(help="Generated operator folder.")],
        batch: Annotated[int | None, typer.Option(help="Voices per incremental batch.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Group a generated operator's voices; compare with its planted problems (ARI)."""
        from voxloop.detect.evaluation import evaluate_problems as run_problems

        try:
            report = run_problems(data_dir=data, batch=batch)
        except (VoxloopError, ValueError, KeyError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False))
            return
        typer.echo(
            f"ARI {report['ari_planted']:.3f} over pairs with a planted voice "
            f"(planted only {report['ari_planted_only']:.3f}); {report['problems']} "
            f"problems; main-group precision {report['main_group_precision']}"
        )

    @app.command("rebuild-series")
    def rebuild_series(
        granularity: Annotated[str, typer.Option(help="5min, hour or day.")] = "hour",
    ) -> None:
        """Recount every voice in the lake into the detect stage's count series."""
        from voxloop.config import load_settings
        from voxloop.detect.service import rebuild_series as run_rebuild

        rows = run_rebuild(settings=load_settings(), granularity=granularity)
        typer.echo(f"{rows} series-buckets")


def _os_user() -> str:
    """Return the operating-system user running the command, for the audit log."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container UID with no passwd entry and no $USER
        return "unknown"
