"""CLI commands of the act domain: users, tokens, SLA tick, supervision and KPIs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer


def _session() -> Any:
    from voxloop.config import load_settings
    from voxloop.store.service import make_engine, make_sessionmaker, migrate

    settings = load_settings()
    migrate(settings)
    return make_sessionmaker(make_engine(settings))()


def _parse_at(at: str | None) -> datetime:
    if not at:
        return datetime.now(UTC)
    value = datetime.fromisoformat(at)
    if value.tzinfo is None:
        from voxloop.act.commitments import LOCAL_TZ

        value = value.replace(tzinfo=LOCAL_TZ)
    return value.astimezone(UTC)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the act commands to the CLI."""
    user_app = typer.Typer(no_args_is_help=True, help="People and roles.")
    token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
    act_app = typer.Typer(no_args_is_help=True, help="Work orders, SLAs and supervision.")
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    app.add_typer(act_app, name="act")

    @user_app.command("add")
    def user_add(
        username: str,
        role: Annotated[str, typer.Option(help="admin, supervisor, analyst or agent")],
        region: Annotated[
            str | None, typer.Option(help="Scope: 'province' or 'province/city'; empty = all")
        ] = None,
        password: Annotated[
            str | None, typer.Option(help="Login password (prompted on a terminal if omitted)")
        ] = None,
        display_name: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        """Create a user with a role and region scope."""
        from voxloop.act.access import add_user, parse_region
        from voxloop.errors import VoxloopError

        if password is None and sys.stdin.isatty():
            password = typer.prompt(
                "password (empty: API tokens only)",
                default="",
                hide_input=True,
                show_default=False,
            )
        try:
            province, city = parse_region(region)
            with _session() as session:
                user = add_user(
                    session=session,
                    username=username,
                    role=role,
                    password=password or None,
                    province=province,
                    city=city,
                    display_name=display_name,
                )
                session.commit()
                scope = "/".join(p for p in (user.province, user.city) if p) or "all regions"
                typer.echo(f"user {user.username} ({user.role}, {scope}) created")
        except (ValueError, VoxloopError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc

    @token_app.command("create")
    def token_create(
        username: str, name: Annotated[str | None, typer.Option(help="Label")] = None
    ) -> None:
        """Create an API token for USERNAME and print it once."""
        from voxloop.act.access import create_token
        from voxloop.errors import VoxloopError

        try:
            with _session() as session:
                token = create_token(session=session, username=username, name=name)
                session.commit()
        except VoxloopError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(token)

    @act_app.command("tick")
    def act_tick(
        at: Annotated[
            str | None, typer.Option(help="ISO time to evaluate at (default now)")
        ] = None,
    ) -> None:
        """Send SLA reminders, escalate breaches and verify resolved orders as of AT."""
        from voxloop.act import service

        when = _parse_at(at)
        with _session() as session:
            result = {
                "at": when.isoformat(),
                "sla": service.tick(session=session, at=when),
                "verification": service.evaluate_verification(session=session, at=when),
            }
        from voxloop.config import load_settings
        from voxloop.errors import VoxloopError
        from voxloop.web.report import run_scheduled_reports

        # The monthly report rides on the same tick (a no-op unless report_schedule is set);
        # a report that cannot render (no CJK font) must not stop the SLA clock.
        try:
            reports = run_scheduled_reports(settings=load_settings(), at=when)
            result["reports"] = [entry.id for entry in reports]
        except VoxloopError as exc:
            result["reports_error"] = str(exc)
        _echo_json(result)

    @act_app.command("supervise")
    def act_supervise(
        violations: Annotated[bool, typer.Option(help="Also print every violation")] = False,
        open_orders: Annotated[
            bool, typer.Option(help="Open one work order per violation (idempotent)")
        ] = False,
    ) -> None:
        """Check the journey events in the lake against the commitment rules."""
        from voxloop.act import service, supervision
        from voxloop.act.access import SYSTEM
        from voxloop.config import load_settings
        from voxloop.store.service import lake_connection

        con = lake_connection(load_settings(), ("events",))
        checks = supervision.check_events(con)
        out: dict[str, Any] = {"rules": supervision.compliance(checks)}
        found = supervision.violations(checks)
        if violations:
            out["violations"] = found
        if open_orders:
            with _session() as session:
                out["orders"] = service.open_orders_for_violations(
                    session=session, principal=SYSTEM, violations=found
                )
        _echo_json(out)

    @act_app.command("kpis")
    def act_kpis() -> None:
        """Print the operations KPIs (docs/kpis.md)."""
        from voxloop.act import kpis
        from voxloop.act.access import SYSTEM
        from voxloop.config import load_settings
        from voxloop.store.service import lake_connection

        settings = load_settings()
        con = lake_connection(settings, ("voices", "readings", "customers"))
        with _session() as session:
            out = {
                "lake": kpis.lake_kpis(con),
                "orders": kpis.order_kpis(session=session, principal=SYSTEM),
            }
        _echo_json(out)
