"""CLI commands of the analyze domain."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from voxloop.errors import VoxloopError


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=str))
        return
    from voxloop.analyze.service import format_text

    typer.echo(format_text(result))


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the analyze commands to the CLI."""

    @evaluate.command("satisfaction")
    def evaluate_satisfaction(
        train: Annotated[str, typer.Option("--train", help="CSV(.gz)/JSONL/Parquet file.")],
        target: Annotated[str, typer.Option("--target", help="Outcome column.")],
        test: Annotated[str | None, typer.Option("--test")] = None,
        positive: Annotated[str | None, typer.Option("--positive")] = None,
        cv: Annotated[int | None, typer.Option("--cv", help="Folds when no test file.")] = None,
        drop: Annotated[str | None, typer.Option("--drop", help="Columns to ignore.")] = None,
        drivers: Annotated[
            str | None, typer.Option("--drivers", help="Comma-separated driver columns.")
        ] = None,
        top_k: Annotated[int, typer.Option("--top-k")] = 5,
        n_boot: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples.")] = 0,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Measure satisfied/not prediction (accuracy, ROC-AUC) and the top drivers."""
        from voxloop.analyze.evaluation import evaluate_satisfaction as run

        try:
            result = run(
                train=train,
                test=test,
                target=target,
                positive=positive,
                cv=cv,
                drop=_split(drop),
                drivers=_split(drivers) or None,
                top_k=top_k,
                n_boot=n_boot,
                seed=seed,
            )
        except VoxloopError as exc:
            _fail(exc)
            return
        _print(result, as_json)

    @evaluate.command("churn")
    def evaluate_churn(
        train: Annotated[str, typer.Option("--train")],
        target: Annotated[str, typer.Option("--target")],
        id_column: Annotated[str, typer.Option("--id", help="Customer id column.")],
        test: Annotated[str | None, typer.Option("--test")] = None,
        positive: Annotated[str | None, typer.Option("--positive")] = None,
        cv: Annotated[int | None, typer.Option("--cv")] = None,
        drop: Annotated[str | None, typer.Option("--drop")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Measure churn risk on held-out customers (ROC-AUC, PR-AUC, Brier)."""
        from voxloop.analyze.evaluation import evaluate_churn as run

        try:
            result = run(
                train=train,
                test=test,
                target=target,
                id_column=id_column,
                positive=positive,
                cv=cv,
                drop=_split(drop),
                seed=seed,
            )
        except VoxloopError as exc:
            _fail(exc)
            return
        _print(result, as_json)
