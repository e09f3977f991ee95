"""CLI commands of the scale domain: ``voxloop consume`` and ``voxloop spark run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voxloop.config import load_settings


def register(*, app: typer.Typer, evaluate: typer.Typer, analyze: typer.Typer) -> None:
    """Add the scale commands to the CLI."""
    spark_app = typer.Typer(help="Run the pipeline stages on Apache Spark.", no_args_is_help=True)
    app.add_typer(spark_app, name="spark")

    @spark_app.command("run")
    def spark_run(
        inputs: Annotated[
            list[Path] | None, typer.Argument(help="Files the ingest stage reads.")
        ] = None,
        master: Annotated[str, typer.Option(help="Spark master URL.")] = "local[*]",
        stages: Annotated[
            str, typer.Option(help="Comma-separated: ingest,understand,detect,analyze.")
        ] = "ingest,understand,detect,analyze",
        lake: Annotated[
            Path | None, typer.Option(help="voxloop home whose lake/ is read and written.")
        ] = None,
    ) -> None:
        """Run the stage functions over the Parquet lake on Spark (mapInArrow)."""
        from voxloop.pipeline.spark import run_spark

        settings = load_settings(**({"home": lake} if lake else {}))
        result = run_spark(
            master=master,
            settings=settings,
            stages=[s.strip() for s in stages.split(",") if s.strip()],
            inputs=inputs or [],
        )
        typer.echo(json.dumps(result, default=str))

    @app.command("consume")
    def consume(
        url: Annotated[
            str, typer.Argument(help="nats://host:4222 or kafka://host:9092 (bootstrap).")
        ],
        stream: Annotated[
            str, typer.Option(help="JetStream stream (NATS) or topic (Kafka).")
        ] = "VOICES",
        subject: Annotated[str, typer.Option(help="NATS subject filter.")] = "voices.>",
        durable: Annotated[
            str, typer.Option(help="Durable consumer (NATS) or consumer group (Kafka).")
        ] = "voxloop",
        kind: Annotated[str, typer.Option(help="voice, survey, customer or event.")] = "voice",
        batch: Annotated[
            int | None, typer.Option(min=1, help="Messages per batch (default: settings).")
        ] = None,
        stages: Annotated[
            bool, typer.Option(help="Run the post-ingest stages after stored batches.")
        ] = True,
        idle_exit: Annotated[
            float | None, typer.Option(help="Stop after this many seconds without messages.")
        ] = None,
        progress: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 5.0,
        ack_wait: Annotated[
            float,
            typer.Option(help="NATS: seconds before an unacknowledged batch is redelivered."),
        ] = 60.0,
        max_ack_pending: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="NATS: unacknowledged messages the durable consumer allows when this "
                "creates it (default two batches; N processes sharing it: 2 x batch x N).",
            ),
        ] = None,
    ) -> None:
        """Consume voices from a broker into the lake; acknowledge only what is stored."""
        from voxloop.ingest.broker import consume_kafka, consume_nats
        from voxloop.ingest.schemas import RecordKind
        from voxloop.pipeline.service import StageRunner

        settings = load_settings()
        record_kind = RecordKind(kind)
        runner = StageRunner(settings=settings) if stages and settings.stages_after_push else None
        if url.startswith("kafka://"):
            stats = consume_kafka(
                settings=settings,
                bootstrap=url.removeprefix("kafka://"),
                topic=stream,
                group=durable,
                kind=record_kind,
                batch_size=batch,
                stages=runner,
                idle_exit=idle_exit,
                progress=progress,
            )
        elif url.startswith(("nats://", "tls://")):
            stats = consume_nats(
                settings=settings,
                url=url,
                stream=stream,
                subject=subject,
                durable=durable,
                kind=record_kind,
                batch_size=batch,
                stages=runner,
                idle_exit=idle_exit,
                progress=progress,
                ack_wait=ack_wait,
                max_ack_pending=max_ack_pending,
            )
        else:
            raise typer.BadParameter("URL must start with nats://, tls:// or kafka://")
        typer.echo(
            json.dumps(
                {
                    "consumed": stats.consumed,
                    "stored": stats.stored,
                    "quarantined": stats.quarantined,
                    "duplicates": stats.duplicates,
                    "batches": stats.batches,
                    "lag": stats.lag,
                }
            )
        )
