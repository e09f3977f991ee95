"""Entry point of the ``voxloop`` command; each domain registers its own commands."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from voxloop.config import load_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="voxloop customer-experience platform"
)
evaluate_app = typer.Typer(no_args_is_help=True, help="Measure models on labelled data.")
analyze_app = typer.Typer(no_args_is_help=True, help="Satisfaction analyses.")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(analyze_app, name="analyze")


@app.command()
def init() -> None:
    """Create the data directory and migrate the operational store."""
    from voxloop.store.service import migrate

    settings = load_settings()
    migrate(settings)
    typer.echo(f"initialised {settings.home.resolve()}")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print what the store holds."""
    from voxloop.pipeline.service import store_status

    summary = store_status(settings=load_settings())
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        for key, value in summary.items():
            typer.echo(f"{key:>24}: {value}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the port (uvicorn workers).")
    ] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (off behind a proxy that logs them: saves CPU per request).",
        ),
    ] = True,
) -> None:
    """Serve the API and dashboard (dev mode without users: loopback addresses only)."""
    import uvicorn

    from voxloop.api.app import check_bind, create_app
    from voxloop.errors import ConfigError

    settings = load_settings()
    bind_host = host or settings.host
    bind_port = port or settings.port
    web_app = create_app(settings)
    try:
        check_bind(web_app, host=bind_host)
    except ConfigError as exc:
        web_app.state.engine.dispose()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"voxloop dashboard: http://{bind_host}:{bind_port}/")
    if workers == 1:
        uvicorn.run(
            web_app, host=bind_host, port=bind_port, log_level="info", access_log=access_log
        )
        return
    # Worker processes build their own app from the same environment; this one only
    # migrated the store and checked the bind.
    web_app.state.engine.dispose()
    uvicorn.run(
        "voxloop.api.app:app_from_env",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level="info",
        access_log=access_log,
    )


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Exit after the pipeline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    customers: Annotated[int, typer.Option(min=100)] = 20_000,
    days: Annotated[int, typer.Option(min=1)] = 60,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Generate a demo operator, ingest it, run every pipeline stage, then serve."""
    from voxloop.demo.service import run_demo

    settings = load_settings()
    summary = run_demo(
        settings=settings,
        customers=customers,
        days=days,
        seed=seed,
        log=None if as_json else typer.echo,
    )
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, default=str))
    if not no_serve:
        serve(host=None, port=None, workers=1)


def _register_domains() -> None:
    from voxloop.cli import (
        act,
        analyze,
        assist,
        detect,
        generate,
        ingest,
        qa,
        report,
        scale,
        understand,
    )

    for module in (ingest, generate, understand, detect, analyze, act, assist, qa, scale, report):
        module.register(app=app, evaluate=evaluate_app, analyze=analyze_app)


def main() -> None:
    """Run the CLI."""
    _register_domains()
    app()
