"""CLI commands of quality inspection: ``voxloop qa run`` and ``voxloop evaluate qa``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _rules_text(report: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [
        f"source: {report['source']}  pack: {report['pack_version']}",
        f"{'rule':<30} {'tp':>5} {'fp':>5} {'fn':>5} {'precision':>9} {'recall':>7} {'f1':>6}",
    ]
    for row in [*report["rules"], {"rule_id": "(all rules)", **report["micro"]}]:
        lines.append(
            f"{row['rule_id']:<30} {row['tp']:>5} {row['fp']:>5} {row['fn']:>5} "
            f"{cell(row['precision']):>9} {cell(row['recall']):>7} {cell(row['f1']):>6}"
        )
    return "\n".join(lines)


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the quality-inspection commands to the CLI."""
    qa_app = typer.Typer(no_args_is_help=True, help="Quality inspection (质检) of conversations.")
    app.add_typer(qa_app, name="qa")

    @qa_app.command("run")
    def qa_run(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Inspect every call transcript and chat not yet inspected under the rule pack."""
        from voxloop.assist.qa import qa_stage
        from voxloop.config import load_settings
        from voxloop.errors import VoxloopError

        try:
            res = qa_stage(settings=load_settings())
        except VoxloopError as exc:
            _fail(str(exc))
            return
        if as_json:
            typer.echo(json.dumps(res, ensure_ascii=False))
        else:
            typer.echo("\n".join(f"{k:>14}: {v}" for k, v in res.items()))

    @evaluate.command("qa")
    def evaluate_qa_cmd(
        truth: Annotated[
            Path | None,
            typer.Option(help="ground_truth.json with qa_conversations/qa_violations"),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Report per-rule precision/recall against QA labels (or a ground-truth file)."""
        from voxloop.assist.qa import evaluate_qa
        from voxloop.config import load_settings
        from voxloop.errors import VoxloopError
        from voxloop.store.service import make_engine, make_sessionmaker, migrate

        settings = load_settings()
        try:
            if truth is not None:
                res = evaluate_qa(settings=settings, truth=truth)
            else:
                migrate(settings)
                engine = make_engine(settings)
                with make_sessionmaker(engine)() as session:
                    res = evaluate_qa(settings=settings, session=session)
                engine.dispose()
        except VoxloopError as exc:
            _fail(str(exc))
            return
        typer.echo(json.dumps(res, ensure_ascii=False) if as_json else _rules_text(res))
