"""Understand stage: read new voices into the ``readings`` lake table, train, correct.

Readings are append-only: a new model version or a human correction adds rows; the
latest reading of a voice is the one with the greatest ``read_at``.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voxloop.config import Settings
from voxloop.errors import NotFoundError, UnusableInputError, VoxloopError
from voxloop.store.service import lake_connection, part_files, write_part, writer_lock
from voxloop.understand.embed_cache import attach_cache
from voxloop.understand.encoders import attach_secrets, encoder_spec, reading_encoder
from voxloop.understand.estimators import TextClassifier
from voxloop.understand.reading import (
    EMOTION_ALIASES,
    READING_SCHEMA,
    READINGS_TABLE,
    SENTIMENT_ALIASES,
    ReadingBundle,
    build_bundle,
    content_version,
    read_table,
)
from voxloop.understand.schemas import ReadingCorrection
from voxloop.understand.taxonomy import Taxonomy, load_taxonomy

#: Days of history in which earlier voices of the same customer count as repeat contacts.
REPEAT_WINDOW_DAYS = 30
#: Most labelled history rows used for training (the newest ones).
MAX_HISTORY = 200_000
BUNDLE_FILE = "bundle.pkl"


class InvalidCorrectionError(VoxloopError, ValueError):
    """A human correction names a scenario or subcategory the taxonomy does not have."""


#: A labelled file for supervised training: (path, text column, label column).
LabelledFile = tuple[Path, str, str]

_CACHE: dict[str, ReadingBundle] = {}
_CACHE_LOCK = threading.Lock()


def models_dir(settings: Settings) -> Path:
    """Return the folder of saved, versioned understanding models."""
    return settings.home / "models" / "understand"


def _taxonomy(settings: Settings, path: Path | None, mode: str) -> Taxonomy:
    chosen = path or getattr(settings, "understand_taxonomy", None)
    return load_taxonomy(Path(chosen) if chosen else None, mode=mode)


def save_bundle(*, settings: Settings, bundle: ReadingBundle) -> Path:
    """Write ``bundle`` under ``models/understand/<version>/`` with a JSON manifest."""
    folder = models_dir(settings) / bundle.version
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{BUNDLE_FILE}.tmp"
    with tmp.open("wb") as fh:
        pickle.dump(bundle, fh)
    tmp.replace(folder / BUNDLE_FILE)
    manifest = {
        "version": bundle.version,
        "taxonomy": f"{bundle.taxonomy.name} {bundle.taxonomy.version}",
        "saved_at": datetime.now(UTC).isoformat(),
        **bundle.info,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return folder


def latest_model_version(settings: Settings) -> str | None:
    """Return the newest saved model version, or None when none was trained."""
    root = models_dir(settings)
    if not root.is_dir():
        return None
    versions = sorted(p.name for p in root.iterdir() if (p / BUNDLE_FILE).exists())
    return versions[-1] if versions else None


def load_bundle(*, settings: Settings, version: str | None = None) -> ReadingBundle:
    """Load a saved bundle (newest by default); without any, build the default one."""
    chosen = version or latest_model_version(settings)
    key = f"{models_dir(settings).resolve()}::{chosen}"
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if chosen is None:
            bundle = build_bundle(taxonomy=_taxonomy(settings, None, "extend"))
        else:
            path = models_dir(settings) / chosen / BUNDLE_FILE
            if not path.exists():
                raise NotFoundError(f"no understanding model version {chosen!r} under {path}")
            with path.open("rb") as fh:
                bundle = pickle.load(fh)  # written by save_bundle only
            for head in (bundle.scenario, bundle.sentiment, bundle.emotion):
                attach_secrets(head, settings)
                attach_cache(head, settings)
        _CACHE[key] = bundle
        return bundle


def _voices_query(has_readings: bool) -> str:
    # Repeat contacts are counted over all voices (window), then unread ones are kept.
    anti = (
        "WHERE NOT EXISTS (SELECT 1 FROM readings r "
        "WHERE r.voice_id = v.id AND r.model_version = $version)"
        if has_readings
        else ""
    )
    return f"""
        WITH latest AS (
            SELECT id, text, customer_id, received_at FROM voices
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY ingested_at DESC) = 1
        ), counted AS (
            SELECT id, text,
                CASE WHEN customer_id IS NULL THEN 0 ELSE count(*) OVER (
                    PARTITION BY customer_id ORDER BY received_at
                    RANGE BETWEEN INTERVAL {REPEAT_WINDOW_DAYS} DAYS PRECEDING AND CURRENT ROW
                ) - 1 END AS prior_contacts
            FROM latest
        )
        SELECT v.id, v.text, v.prior_contacts FROM counted v {anti} ORDER BY v.id
    """


def read_new_voices(*, settings: Settings) -> dict[str, Any]:
    """Read every voice that has no reading of the current model version; append readings."""
    started = time.perf_counter()
    if not part_files(settings, "voices"):
        return {"read": 0, "model_version": None}
    trained = None
    corpora = settings.understand_corpora
    info = load_bundle(settings=settings).info if latest_model_version(settings) else None
    if (
        info is None
        or (corpora is not None and "corpora" not in info)
        or info.get("encoder_requested", info.get("encoder")) != encoder_spec(settings)
    ):
        # The first reading trains on whatever labelled history the store already holds,
        # plus the configured corpora; a bundle that already records corpora is kept. A
        # changed encoder setting retrains, so the configuration takes effect at once.
        reuse = corpora if info is None or "corpora" not in info else None
        trained = train(settings=settings, corpora=reuse)
    bundle = load_bundle(settings=settings)
    read = review = escalations = 0
    with writer_lock(settings, READINGS_TABLE):
        has_readings = bool(part_files(settings, READINGS_TABLE))
        tables = ("voices", READINGS_TABLE) if has_readings else ("voices",)
        con = lake_connection(settings, tables)
        params = {"version": bundle.version} if has_readings else {}
        reader = con.sql(_voices_query(has_readings), params=params or None).to_arrow_reader(
            settings.batch_size
        )
        for batch in reader:
            if batch.num_rows == 0:
                continue
            prior = batch.column("prior_contacts").to_numpy(zero_copy_only=False)
            out = read_table(batch, bundle=bundle, prior_contacts=np.asarray(prior))
            write_part(settings, READINGS_TABLE, out)
            read += out.num_rows
            review += int(np.sum(out.column("needs_review").to_numpy(zero_copy_only=False)))
            escalations += int(np.sum(out.column("escalation_risk").to_numpy(zero_copy_only=False)))
        con.close()
    return {
        "read": read,
        "needs_review": review,
        "escalation_risk": escalations,
        "model_version": bundle.version,
        "trained": trained,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _row_dict(row: tuple[Any, ...], names: list[str]) -> dict[str, Any]:
    out = dict(zip(names, row, strict=True))
    if isinstance(out.get("read_at"), datetime):
        out["read_at"] = out["read_at"].astimezone(UTC).isoformat()
    return out


def get_reading(*, settings: Settings, voice_id: str) -> dict[str, Any]:
    """Return the latest reading of a voice."""
    if not part_files(settings, READINGS_TABLE):
        raise NotFoundError(f"voice {voice_id!r} has no reading yet")
    con = lake_connection(settings, (READINGS_TABLE,))
    # Arrow, not fetchone(): DuckDB's Python conversion of TIMESTAMPTZ needs pytz.
    rows = (
        con.sql(
            "SELECT * FROM readings WHERE voice_id = ? ORDER BY read_at DESC LIMIT 1",
            params=[voice_id],
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.close()
    if not rows:
        raise NotFoundError(f"voice {voice_id!r} has no reading yet")
    row = rows[0]
    return _row_dict(tuple(row.values()), list(row))


def correct_reading(
    *, settings: Settings, voice_id: str, correction: ReadingCorrection
) -> dict[str, Any]:
    """Store a human correction as a new reading row (``scenario_source = "human"``)."""
    current = get_reading(settings=settings, voice_id=voice_id)
    bundle = load_bundle(settings=settings)
    codes = {s.code: s for s in bundle.taxonomy.scenarios}
    changes = correction.model_dump(exclude_unset=True, exclude_none=True)
    if "scenario" in changes and changes["scenario"] not in codes:
        raise InvalidCorrectionError(
            f"field 'scenario': unknown scenario code {changes['scenario']!r}; "
            f"known: {', '.join(codes)}"
        )
    scenario = changes.get("scenario", current["scenario"])
    if "subcategory" in changes:
        subs = {c.code for c in codes[scenario].subcategories} if scenario in codes else set()
        if changes["subcategory"] not in subs:
            raise InvalidCorrectionError(
                f"field 'subcategory': {changes['subcategory']!r} "
                f"is not a subcategory of {scenario}"
            )
    elif "scenario" in changes and changes["scenario"] != current["scenario"]:
        current["subcategory"] = None
    row = {**current, **changes}
    row.update(
        voice_id=voice_id,
        scenario_confidence=1.0,
        scenario_source="human",
        needs_review=False,
        model_version="human",
        read_at=datetime.now(UTC),
        corrected_fields=sorted(changes),
    )
    table = pa.Table.from_pylist([row], schema=READING_SCHEMA)
    with writer_lock(settings, READINGS_TABLE):
        write_part(settings, READINGS_TABLE, table)
    return _row_dict(tuple(row[n] for n in READING_SCHEMA.names), list(READING_SCHEMA.names))


def labelled_history(*, settings: Settings, codes: set[str]) -> tuple[list[str], list[str]]:
    """Return texts and scenario labels: voices' ``attributes.scenario`` and human corrections.

    A human correction overrides a voice's own label; only known scenario codes are kept.
    """
    if not part_files(settings, "voices"):
        return [], []
    has_readings = bool(part_files(settings, READINGS_TABLE))
    con = lake_connection(settings, ("voices", READINGS_TABLE) if has_readings else ("voices",))
    # Corrections that did not set the scenario carry the model's guess; rows from before
    # corrected_fields existed (null) were scenario corrections.
    which = (
        " AND (corrected_fields IS NULL OR list_contains(corrected_fields, 'scenario'))"
        if has_readings and _has_column(con, READINGS_TABLE, "corrected_fields")
        else ""
    )
    human = (
        f"""LEFT JOIN (SELECT voice_id, arg_max(scenario, read_at) AS scenario FROM readings
                      WHERE scenario_source = 'human'{which}
                      GROUP BY voice_id) h ON h.voice_id = v.id"""
        if has_readings
        else "LEFT JOIN (SELECT NULL::VARCHAR AS voice_id, NULL::VARCHAR AS scenario) h ON false"
    )
    rows = con.execute(
        f"""
        SELECT v.text, coalesce(h.scenario, element_at(v.attributes, 'scenario')[1]) AS label
        FROM (SELECT * FROM voices QUALIFY row_number() OVER
              (PARTITION BY id ORDER BY ingested_at DESC) = 1) v
        {human}
        WHERE coalesce(h.scenario, element_at(v.attributes, 'scenario')[1]) IS NOT NULL
        ORDER BY v.received_at DESC LIMIT {MAX_HISTORY}
        """
    ).fetchall()
    con.close()
    kept = [(t, label) for t, label in rows if label in codes and t]
    return [t for t, _ in kept], [label for _, label in kept]


def _has_column(con: Any, table: str, column: str) -> bool:
    return column in {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}


def corrected_labels(*, settings: Settings, field: str) -> tuple[list[str], list[str]]:
    """Return texts and the latest human value of ``field`` for voices a human corrected it on."""
    if field not in ("sentiment", "emotion") or not part_files(settings, READINGS_TABLE):
        return [], []
    if not part_files(settings, "voices"):
        return [], []
    con = lake_connection(settings, ("voices", READINGS_TABLE))
    try:
        if not _has_column(con, READINGS_TABLE, "corrected_fields"):
            return [], []  # every reading predates corrected_fields
        rows = con.execute(
            f"""
            WITH h AS (
                SELECT voice_id, arg_max({field}, read_at) AS label FROM readings
                WHERE scenario_source = 'human' AND list_contains(corrected_fields, '{field}')
                GROUP BY voice_id
            )
            SELECT v.text, h.label
            FROM (SELECT * FROM voices QUALIFY row_number() OVER
                  (PARTITION BY id ORDER BY ingested_at DESC) = 1) v
            JOIN h ON h.voice_id = v.id
            WHERE v.text IS NOT NULL AND v.text <> '' AND h.label IS NOT NULL
            ORDER BY v.id
            """
        ).fetchall()
    finally:
        con.close()
    return [t for t, _ in rows], [str(label) for _, label in rows]


def train(
    *,
    settings: Settings,
    taxonomy_path: Path | None = None,
    taxonomy_mode: str = "extend",
    holdout: float = 0.2,
    seed: int = 0,
    sentiment_data: LabelledFile | None = None,
    emotion_data: LabelledFile | None = None,
    corpora: Path | None = None,
) -> dict[str, Any]:
    """Retrain the scenario model from taxonomy examples, labelled history and corrections.

    With enough history a stratified ``holdout`` share is scored first (accuracy,
    macro-F1), then the saved model is refitted on everything. ``corpora`` (a folder laid
    out like ``../shared/data``) trains the default sentiment and emotion models from the
    known corpora found there (``voxloop.understand.corpora``); ``sentiment_data`` /
    ``emotion_data`` (file, text column, label column) then replace either with a plain
    supervised model. Human sentiment/emotion corrections (at least
    ``corpora.MIN_CORRECTIONS`` Chinese ones with two labels) retrain the corpus models,
    adapted to the operator's voices, from ``corpora`` or the folder that trained the
    previous bundle. Otherwise the previous model's sentiment and emotion models are kept.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    previous = load_bundle(settings=settings) if latest_model_version(settings) else None
    taxonomy_note: dict[str, Any] = {}
    recorded = str(previous.info.get("taxonomy_file") or "") if previous is not None else ""
    from_record = taxonomy_path is None and settings.understand_taxonomy is None and bool(recorded)
    if from_record and previous is not None:
        # A taxonomy given once with `voxloop train --taxonomy` stays in force for later
        # retrains (corrections, a changed encoder) until another one is given; it is
        # re-read so that edits to the operator's file take effect.
        taxonomy_path, taxonomy_mode = Path(recorded), previous.info.get("taxonomy_mode", "extend")
    if from_record and previous is not None and not Path(recorded).exists():
        taxonomy = previous.taxonomy
        taxonomy_note["taxonomy_missing"] = f"{recorded} not found: kept the previous taxonomy"
    else:
        taxonomy = _taxonomy(settings, taxonomy_path, taxonomy_mode)
    if taxonomy_path is not None:
        taxonomy_note.update(
            taxonomy_file=str(taxonomy_path.resolve()), taxonomy_mode=taxonomy_mode
        )
    encoder, spec, fallback = reading_encoder(settings)
    texts, labels = labelled_history(settings=settings, codes={s.code for s in taxonomy.scenarios})
    metrics: dict[str, Any] = {}
    counts = {label: labels.count(label) for label in set(labels)}
    if len(texts) >= 100 and holdout > 0 and min(counts.values()) >= 2:
        tr_x, te_x, tr_y, te_y = train_test_split(
            texts, labels, test_size=holdout, random_state=seed, stratify=labels
        )
        probe = build_bundle(
            taxonomy=taxonomy, history_texts=tr_x, history_labels=tr_y, encoder=encoder
        )
        pred = probe.scenario.predict(te_x)
        metrics = {
            "holdout_accuracy": round(float(accuracy_score(te_y, pred)), 4),
            "holdout_macro_f1": round(float(f1_score(te_y, pred, average="macro")), 4),
            "n_holdout": len(te_x),
        }
    # Microseconds: versions sort by name, and two trainings in one second must still
    # order by time, not by their content hash.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    info: dict[str, Any] = {"n_history": len(texts), **metrics, **taxonomy_note}
    if spec is not None:
        info["encoder_requested"] = spec
    if encoder is not None:
        info["encoder"] = spec
    if fallback is not None:
        # The reading stays usable with TF-IDF alone; the manifest says why.
        info["encoder_fallback"] = fallback
    summary = {"n": len(texts), "labels": counts, "encoder": info.get("encoder")}
    version = f"u{stamp}-{content_version(taxonomy, summary)}"
    sentiment: Any = None
    emotion: Any = None
    from voxloop.understand.corpora import (
        ENCODER_TASKS,
        MIN_CORRECTIONS,
        corrections_for_training,
        corrections_usable,
        train_corpus_models,
    )

    fixes = {task: corrected_labels(settings=settings, field=task) for task in CORRECTED_TASKS}
    usable = any(corrections_usable(corrections_for_training(*f)) for f in fixes.values())
    root = _corpora_root(corpora, previous)
    retrained = root is not None and (corpora is not None or usable)
    if root is not None and retrained:
        # Enough human sentiment/emotion corrections adapt the corpus models to this
        # operator's voices, so the models are retrained when they are there.
        sentiment, emotion, info["corpora"] = train_corpus_models(
            root, corrections=fixes, encoder=encoder, encoder_tasks=ENCODER_TASKS
        )
    else:
        if previous is not None and "corpora" in previous.info:
            info["corpora"] = previous.info["corpora"]
        n_fixes = {task: len(f[0]) for task, f in fixes.items() if f[0]}
        if n_fixes:
            info["corrections_unused"] = (
                f"{n_fixes}: fewer than {MIN_CORRECTIONS} Chinese corrections with two labels"
                if not usable
                else "no corpora folder to retrain from (set VOXLOOP_UNDERSTAND_CORPORA or "
                "pass --corpora): corrections adapt the corpus models"
            )
    sentiment = _supervised(sentiment_data, "sentiment", SENTIMENT_ALIASES, info) or sentiment
    emotion = _supervised(emotion_data, "emotion", EMOTION_ALIASES, info) or emotion
    if sentiment is None and previous is not None:
        sentiment = previous.sentiment
    if emotion is None and previous is not None:
        emotion = previous.emotion
    if sentiment is not None or emotion is not None:
        tag = {"sentiment": type(sentiment).__name__, "emotion": type(emotion).__name__}
        version += "-" + content_version(taxonomy, {**info, **tag})[:4]
    bundle = build_bundle(
        taxonomy=taxonomy,
        history_texts=texts,
        history_labels=labels,
        version=version,
        sentiment=sentiment,
        emotion=emotion,
        encoder=encoder,
    )
    below = getattr(bundle.scenario, "encode_below_", None)
    if below is not None:
        # The voices the reading encodes: lexical top-class probability below this ("all"
        # when inner CV kept the encoder for every voice).
        info["scenario_encode_below"] = "all" if below == float("inf") else round(below, 4)
    bundle.info.update(info)
    folder = save_bundle(settings=settings, bundle=bundle)
    models = {
        task: info["corpora"][task]["model"]
        for task in ("sentiment", "emotion")
        if retrained and task in info["corpora"]
    }
    used = {
        task: info["corpora"][task]["corrections"]
        for task in CORRECTED_TASKS
        if retrained and "corrections" in info["corpora"].get(task, {})
    }
    return {
        "model_version": version,
        "path": str(folder),
        "n_history": len(texts),
        "n_examples": bundle.info["n_examples"],
        "train_seconds": round(time.perf_counter() - started, 2),
        **({"corpus_models": models} if models else {}),
        **({"corrections": used} if used else {}),
        **(
            {"corrections_unused": info["corrections_unused"]}
            if "corrections_unused" in info
            else {}
        ),
        **({"encoder": info["encoder"]} if "encoder" in info else {}),
        **(
            {"scenario_encode_below": info["scenario_encode_below"]}
            if "scenario_encode_below" in info
            else {}
        ),
        **({"encoder_fallback": fallback} if fallback is not None else {}),
        **metrics,
    }


#: Reading fields whose human corrections retrain the corpus models.
CORRECTED_TASKS = ("sentiment", "emotion")


def _corpora_root(corpora: Path | None, previous: ReadingBundle | None) -> Path | None:
    """Return the corpora folder to (re)train from: the given one, else the previous one's."""
    if corpora is not None:
        return Path(corpora)
    if previous is None or "corpora" not in previous.info:
        return None
    recorded = previous.info["corpora"].get("root")
    root = Path(recorded) if recorded else None
    return root if root is not None and root.is_dir() else None


def _supervised(
    data: LabelledFile | None, task: str, aliases: dict[str, str], info: dict[str, Any]
) -> TextClassifier | None:
    """Fit a supervised sentiment/emotion model on a labelled file, labels mapped to ours."""
    if data is None:
        return None
    from voxloop.understand.evaluation import read_labelled, task_model

    path, text_col, label_col = data
    texts, raw = read_labelled(path, text_col=text_col, label_col=label_col)
    labels = [aliases.get(r.strip().lower(), "") for r in raw]
    unknown = sorted({r for r, m in zip(raw, labels, strict=True) if not m})
    if unknown:
        raise UnusableInputError(
            f"{path}: {label_col!r} values {unknown[:5]} are not {task} labels "
            f"({', '.join(sorted(set(aliases)))})"
        )
    info[f"{task}_model"] = {"file": str(path), "n": len(texts)}
    return task_model(task).fit(texts, labels)


def overview(*, settings: Settings, limit: int = 20) -> dict[str, Any]:
    """Summarise the latest reading of every voice: per scenario, source, review queue."""
    empty: dict[str, Any] = {
        "total": 0,
        "scenarios": [],
        "sources": [],
        "sentiments": [],
        "review": [],
        "escalations": [],
        "model_version": latest_model_version(settings) or "default",
    }
    if not part_files(settings, READINGS_TABLE):
        return empty
    has_voices = bool(part_files(settings, "voices"))
    con = lake_connection(settings, ("voices", READINGS_TABLE) if has_voices else (READINGS_TABLE,))
    con.execute(
        "CREATE TEMP VIEW latest AS SELECT * FROM readings "
        "QUALIFY row_number() OVER (PARTITION BY voice_id ORDER BY read_at DESC) = 1"
    )
    taxonomy = load_bundle(settings=settings).taxonomy
    names = {s.code: (s.zh, s.en) for s in taxonomy.scenarios}

    def grouped(col: str) -> list[dict[str, Any]]:
        rows = con.execute(
            f"SELECT {col}, count(*) AS n FROM latest GROUP BY 1 ORDER BY n DESC, 1"
        ).fetchall()
        return [{"key": k, "n": int(n)} for k, n in rows]

    scenarios = grouped("scenario")
    for s in scenarios:
        s["zh"], s["en"] = names.get(s["key"], (s["key"], s["key"]))
    source_expr = "CASE WHEN scenario_source LIKE 'rule:%' THEN 'rule' ELSE scenario_source END"
    text_join = "LEFT JOIN voices v ON v.id = l.voice_id" if has_voices else ""
    text_col = "v.text" if has_voices else "NULL"

    def listing(where: str) -> list[dict[str, Any]]:
        rows = con.execute(
            f"""SELECT l.voice_id, l.scenario, l.scenario_confidence, l.urgency,
                       {text_col} AS text FROM latest l {text_join}
                WHERE {where} ORDER BY l.urgency DESC, l.voice_id LIMIT {int(limit)}"""
        ).fetchall()
        return [
            {"voice_id": r[0], "scenario": r[1], "confidence": r[2], "urgency": r[3], "text": r[4]}
            for r in rows
        ]

    total_row = con.execute("SELECT count(*) FROM latest").fetchone()
    result = {
        **empty,
        "total": int(total_row[0]) if total_row else 0,
        "scenarios": scenarios,
        "sources": grouped(source_expr),
        "sentiments": grouped("sentiment"),
        "review": listing("l.needs_review"),
        "escalations": listing("l.escalation_risk"),
    }
    con.close()
    return result
