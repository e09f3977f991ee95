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
        trees: Annotated[
            int | None, typer.Option("--trees", help="Boosting rounds (default 1500).")
        ] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Measure satisfied/not prediction (accuracy, ROC-AUC) and the top drivers."""
        from voxloop.analyze.evaluation import evaluate_satisfaction as run
        from voxloop.analyze.satisfaction import SatisfactionModel

        model = SatisfactionModel(seed=seed, **({"n_estimators": trees} if trees else {}))

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
                model=model,
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

    @analyze.command("drivers")
    def analyze_drivers(
        outcome: Annotated[str, typer.Option(help="overall, nps, satisfied, dissatisfied")] = (
            "overall"
        ),
        touchpoint: Annotated[str | None, typer.Option()] = None,
        n_boot: Annotated[int, typer.Option("--bootstrap")] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Key drivers of satisfaction over the survey factor ratings in the lake."""
        from voxloop.analyze.service import drivers_analysis
        from voxloop.config import load_settings

        try:
            result = drivers_analysis(
                settings=load_settings(), outcome=outcome, touchpoint=touchpoint, n_boot=n_boot
            )
        except VoxloopError as exc:
            _fail(exc)
            return
        if not as_json:
            result = {k: v for k, v in result.items() if k not in ("coefficients", "coverage")}
        _print(result, as_json)

    @analyze.command("segments")
    def analyze_segments(
        outcome: Annotated[str, typer.Option()] = "dissatisfied",
        attributes: Annotated[str | None, typer.Option(help="Comma-separated columns.")] = None,
        province: Annotated[str | None, typer.Option()] = None,
        city: Annotated[str | None, typer.Option()] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Dissatisfied segments (readable rules) and a region drill-down."""
        from voxloop.analyze.service import segments_analysis
        from voxloop.config import load_settings

        path = {k: v for k, v in (("province", province), ("city", city)) if v}
        try:
            result = segments_analysis(
                settings=load_settings(),
                outcome=outcome,
                attributes=_split(attributes) or None,
                path=path,
            )
        except VoxloopError as exc:
            _fail(exc)
            return
        if not as_json:
            result["rules"] = [
                {"rule": r["text"], "p_adj": r["p_adjusted"]} for r in result["rules"]
            ]
            result["tree_rules"] = [{"rule": r["text"]} for r in result["tree_rules"]]
        _print(result, as_json)

    @analyze.command("journeys")
    def analyze_journeys(
        customers: Annotated[str | None, typer.Option(help="Comma-separated ids.")] = None,
        segment: Annotated[
            int | None, typer.Option(help="Segment rule number (0 = top rule).")
        ] = None,
        days: Annotated[float, typer.Option()] = 30.0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Event sequences before dissatisfaction, against satisfied customers (lift)."""
        from voxloop.analyze.service import journeys_analysis
        from voxloop.config import load_settings

        try:
            result = journeys_analysis(
                settings=load_settings(),
                customer_ids=_split(customers) or None,
                days=days,
                segment=segment,
            )
        except VoxloopError as exc:
            _fail(exc)
            return
        if not as_json:
            result.pop("timelines", None)
        _print(result, as_json)

    @analyze.command("churn")
    def analyze_churn(
        limit: Annotated[int, typer.Option()] = 20,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Churn risk: validation figures and the ranked list of active customers."""
        from voxloop.analyze.service import churn_analysis
        from voxloop.config import load_settings

        try:
            result = churn_analysis(settings=load_settings(), limit=limit)
        except VoxloopError as exc:
            _fail(exc)
            return
        result.pop("oof_risk", None)
        if not as_json:
            result["at_risk"] = [
                {
                    "id": r["id"],
                    "risk": r["risk"],
                    "reasons": "; ".join(x["reason"] for x in r["reasons"]),
                }
                for r in result["at_risk"]
            ]
        _print(result, as_json)

    @evaluate.command("analysis")
    def evaluate_analysis(
        truth: Annotated[str, typer.Option("--truth", help="Generator ground_truth.json.")],
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Check drivers, segments and churn risk against a generated operator's truth."""
        from voxloop.analyze.evaluation import evaluate_operator
        from voxloop.config import load_settings

        try:
            result = evaluate_operator(settings=load_settings(), truth_path=truth)
        except VoxloopError as exc:
            _fail(exc)
            return
        _print(result, as_json)
