"""CLI commands of the assist domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the assist commands to the CLI."""
    kb_app = typer.Typer(no_args_is_help=True, help="Knowledge base of answers (FAQ).")
    app.add_typer(kb_app, name="kb")

    @kb_app.command("import")
    def kb_import(
        path: Annotated[Path, typer.Argument(help="FAQ file: .json, .csv, .tsv or .md")],
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Import FAQ entries; changed entries get a new version."""
        from voxloop.assist.kb import import_kb
        from voxloop.config import load_settings

        res = import_kb(settings=load_settings(), path=path)
        if as_json:
            typer.echo(res.model_dump_json())
        else:
            typer.echo(
                f"{res.read} read: {res.added} added, {res.updated} updated, "
                f"{res.unchanged} unchanged"
            )

    @kb_app.command("ask")
    def kb_ask(
        question: str,
        region: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        """Answer a question from the knowledge base (JSON)."""
        from voxloop.assist.kb import answer_question
        from voxloop.assist.schemas import AnswerRequest
        from voxloop.config import load_settings

        res = answer_question(
            settings=load_settings(), request=AnswerRequest(question=question, region=region)
        )
        typer.echo(json.dumps(res.model_dump(mode="json"), ensure_ascii=False))

    @evaluate.command("match")
    def evaluate_match_cmd(
        train: Annotated[Path, typer.Option(help="sentence1,sentence2,label CSV")],
        test: Annotated[
            Path | None, typer.Option(help="Held-out CSV; CV on train if unset")
        ] = None,
        folds: Annotated[int, typer.Option(min=2)] = 5,
        no_encoder: Annotated[bool, typer.Option("--no-encoder")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Measure the question matcher (accuracy, F1) on labelled question pairs."""
        from voxloop.assist.matcher import evaluate_match
        from voxloop.understand.encoders import Usem3Encoder

        res = evaluate_match(
            train=train,
            test=test,
            folds=folds,
            encoder=None if no_encoder else Usem3Encoder(),
        )
        typer.echo(
            json.dumps(res) if as_json else "\n".join(f"{k:>14}: {v}" for k, v in res.items())
        )
