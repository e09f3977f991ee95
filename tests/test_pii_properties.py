"""Property tests: PII in the forms people type it is masked before storage; the mapping holds.

Generated phone numbers (spaces, dashes, dots, +86/0086 prefixes), resident IDs with a
valid check digit split by spaces, Luhn-valid bank cards in groups, and e-mail addresses,
any of them partly or wholly in full-width characters, are put into Chinese text. The
masked text must not hold the number in any recoverable form: after folding full-width
characters to ASCII and removing separators it must not contain the bare digits.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from voxloop.config import Settings
from voxloop.errors import UnusableInputError
from voxloop.ingest.mapping import ROW_INDEX, Mapping, apply_mapping, canonical_fields
from voxloop.ingest.pii import _ID_CHECK, _ID_WEIGHTS, mask_array, mask_text
from voxloop.ingest.schemas import RecordKind
from voxloop.ingest.service import ingest_path
from voxloop.store.service import lake_connection

# Filler without digits, Latin letters or the characters addresses and plates end in.
FILLER = st.text(
    alphabet="我的手机电话身份证卡邮箱请帮查一下宽带断网了投诉，。！？：、 ", max_size=10
)
SEPARATORS = st.sampled_from(["", " ", "-"])
_WIDE = {chr(0x30 + i): chr(0xFF10 + i) for i in range(10)} | {
    "X": "Ｘ",
    "x": "ｘ",
    "@": "＠",
    " ": "\u3000",
    "-": "－",
    "+": "＋",
    ".": "．",
}
_NARROW = str.maketrans({v: k for k, v in _WIDE.items()})


@st.composite
def widened(draw: st.DrawFn, text: str) -> str:
    """Return ``text`` with each character (or all of them) maybe in full width."""
    mode = draw(st.sampled_from(["none", "all", "some"]))
    if mode == "none":
        return text
    if mode == "all":
        return "".join(_WIDE.get(c, c) for c in text)
    flags = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(_WIDE.get(c, c) if f else c for c, f in zip(text, flags, strict=True))


@st.composite
def phones(draw: st.DrawFn) -> tuple[str, str]:
    """Return (typed form, bare digits) of a mainland mobile number."""
    digits = (
        "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
    )
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    typed = sep.join((digits[:3], digits[3:7], digits[7:]))
    prefix = draw(st.sampled_from(["", "+86 ", "+86", "86-", "0086 ", "+86-"]))
    return prefix + typed, digits


def _id_check(body: str) -> str:
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


@st.composite
def resident_ids(draw: st.DrawFn) -> tuple[str, str]:
    """Return (typed form, bare 18 characters) of a resident ID with a valid check digit."""
    region = draw(st.sampled_from("123456789")) + draw(
        st.text("0123456789", min_size=5, max_size=5)
    )
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
    body = region + born.strftime("%Y%m%d") + draw(st.text("0123456789", min_size=3, max_size=3))
    check = _id_check(body)
    if check == "X" and draw(st.booleans()):
        check = "x"
    bare = body + check
    cuts = draw(st.sets(st.integers(min_value=1, max_value=17), max_size=5))
    sep = draw(st.sampled_from([" ", "-"]))
    typed = "".join(sep + c if i in cuts else c for i, c in enumerate(bare))
    return typed, bare


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    """Return (typed form, bare digits) of a Luhn-valid 16-19 digit bank card in groups of 4."""
    length = draw(st.integers(min_value=16, max_value=19))
    body = draw(st.sampled_from(["62", "4", "5"]))
    body += draw(
        st.text("0123456789", min_size=length - 1 - len(body), max_size=length - 1 - len(body))
    )
    bare = body + _luhn_digit(body)
    sep = draw(SEPARATORS)
    return sep.join(bare[i : i + 4] for i in range(0, len(bare), 4)), bare


@st.composite
def emails(draw: st.DrawFn) -> tuple[str, str]:
    """Return an e-mail address twice (its typed and bare forms are the same)."""
    local = draw(st.from_regex(r"[a-z][a-z0-9._]{0,10}", fullmatch=True))
    domain = draw(st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z]{2,4}){1,2}", fullmatch=True))
    address = f"{local}@{domain}"
    return address, address


def _bare(text: str) -> str:
    return re.sub(r"[ .\-]", "", text.translate(_NARROW))


def _recoverable(stored: str, secret: str) -> bool:
    """Return whether ``secret`` can be read back from ``stored`` (folded, separators gone)."""
    secret = _bare(secret).lower()
    return secret in _bare(stored).lower()


PII = st.one_of(phones(), resident_ids(), cards(), emails())


@st.composite
def texts_with_pii(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """Return (text, prefix, suffix, bare secret) of one PII value inside Chinese text."""
    typed, bare = draw(PII)
    typed = draw(widened(typed))
    prefix, suffix = draw(FILLER), draw(FILLER)
    return prefix + typed + suffix, prefix, suffix, bare


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=texts_with_pii())
def test_masked_text_holds_no_recoverable_number(sample: tuple[str, str, str, str]) -> None:
    text, prefix, suffix, bare = sample
    out, counts = mask_text(text)
    assert not _recoverable(out, bare), (text, out)
    assert sum(counts.values()) >= 1
    # The words around the number are kept as written.
    assert out.startswith(prefix) and out.endswith(suffix), (text, out)


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(texts_with_pii(), min_size=1, max_size=30), clean=st.lists(FILLER, max_size=10)
)
def test_mask_array_agrees_with_mask_text(
    samples: list[tuple[str, str, str, str]], clean: list[str]
) -> None:
    # The RE2 pre-filter must let every row with PII through to the Python patterns.
    texts = [s[0] for s in samples] + clean
    masked, counts = mask_array(pa.array(texts, pa.string()))
    assert masked.to_pylist() == [mask_text(t)[0] for t in texts]
    for (_, _, _, bare), out in zip(samples, masked.to_pylist(), strict=False):
        assert not _recoverable(out, bare)
    assert counts.to_pylist()[len(samples) :] == [[] for _ in clean]


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet="我的宽带断网了，请尽快处理。好的谢谢！０１２３４５６７８９ＡＢ\u3000", max_size=40
    )
)
def test_text_without_pii_is_left_exactly_as_written(text: str) -> None:
    # Full-width characters are folded only to find PII; text without any keeps its form.
    if len(re.sub(r"\D", "", text.translate(_NARROW))) < 7:
        assert mask_text(text) == (text, {})


def _voice_row(i: int, text: str) -> dict[str, str]:
    return {
        "id": f"pp{i}",
        "source": "prop",
        "kind": "complaint",
        "received_at": "2026-09-01T10:00:00+08:00",
        "customer_id": f"c{i}",
        "province": "江苏",
        "city": "南京",
        "channel": "app",
        "text": text,
    }


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(samples=st.lists(texts_with_pii(), min_size=5, max_size=25))
def test_storage_never_holds_the_raw_number(
    tmp_path_factory: pytest.TempPathFactory, samples: list[tuple[str, str, str, str]]
) -> None:
    root = tmp_path_factory.mktemp("pii-store")
    settings_ = Settings(home=root / "home", env="test", secret_key="test-secret-key")
    half = len(samples) // 2
    # One CSV (canonical columns) and one JSONL whose text arrives in a foreign column.
    (root / "in").mkdir()
    with (root / "in" / "voices.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(_voice_row(0, "").keys()))
        writer.writeheader()
        for i, (text, *_rest) in enumerate(samples[:half]):
            writer.writerow(_voice_row(i, text))
    jsonl = root / "push" / "voices.jsonl"
    jsonl.parent.mkdir()
    with jsonl.open("w", encoding="utf-8") as fh:
        for i, (text, *_rest) in enumerate(samples[half:], start=half):
            row = _voice_row(i, "")
            del row["text"]
            row["内容"] = text
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    first = ingest_path(settings=settings_, path=root / "in", kind="voice")
    second = ingest_path(
        settings=settings_, path=jsonl, kind="voice", mapping=Mapping(columns={"内容": "text"})
    )
    assert first.read + second.read == len(samples)
    con = lake_connection(settings_)
    try:
        stored = [t for (t,) in con.execute("SELECT text FROM voices").fetchall()]
        tables = {
            t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        quarantined = (
            [r for (r,) in con.execute("SELECT raw FROM quarantine").fetchall()]
            if "quarantine" in tables
            else []
        )
    finally:
        con.close()
    assert len(stored) == first.stored + second.stored > 0
    for _text, _prefix, _suffix, bare in samples:
        for value in stored + quarantined:
            assert not _recoverable(value or "", bare), (bare, value)


NAMES = st.text(alphabet="abcxyz_0123来电内容地区渠道", min_size=1, max_size=8)
VALUES = st.one_of(st.none(), st.text(max_size=12))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mapping_renames_keeps_and_refuses_columns(data: st.DataObject) -> None:
    kind = RecordKind.voice
    fields = canonical_fields(kind)
    n = data.draw(st.integers(min_value=0, max_value=6), label="rows")
    sources = data.draw(
        st.lists(
            NAMES.filter(lambda s: s not in fields and not s.startswith("attr")),
            min_size=1,
            max_size=5,
            unique=True,
        ),
        label="sources",
    )
    targets = data.draw(
        st.lists(
            st.sampled_from(fields), min_size=len(sources), max_size=len(sources), unique=True
        ),
        label="targets",
    )
    renamed = data.draw(st.integers(min_value=0, max_value=len(sources)), label="renamed")
    columns = {s: data.draw(st.lists(VALUES, min_size=n, max_size=n)) for s in sources}
    table = pa.table({s: pa.array(v, pa.string()) for s, v in columns.items()})
    mapping = {s: t for s, t in zip(sources[:renamed], targets, strict=False)}
    rest = sources[renamed:]
    for policy in ("attributes", "drop", "error"):
        m = Mapping(columns=mapping, unmapped=policy)
        if policy == "error" and rest:
            with pytest.raises(UnusableInputError) as refused:
                apply_mapping(table, m, kind)
            for name in rest:
                assert repr(name) in str(refused.value)
            continue
        out = apply_mapping(table, m, kind)
        assert out.num_rows == n
        assert out.column(ROW_INDEX).to_pylist() == list(range(n))
        for src, target in mapping.items():
            assert out.column(target).to_pylist() == columns[src]
        for name in rest:
            kept = f"attr.{name}" in out.column_names
            assert kept is (policy == "attributes")
            if kept:
                assert out.column(f"attr.{name}").to_pylist() == columns[name]
        assert not set(sources) & set(out.column_names)


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.one_of(st.none(), st.text(alphabet="ab 宽", max_size=4)), min_size=3, max_size=3),
    b=st.lists(st.one_of(st.none(), st.text(alphabet="cd 带", max_size=4)), min_size=3, max_size=3),
    sep=st.sampled_from([" ", " / ", "，"]),
)
def test_mapping_join_and_coalesce_skip_blanks(
    a: list[str | None], b: list[str | None], sep: str
) -> None:
    table = pa.table({"first": pa.array(a, pa.string()), "second": pa.array(b, pa.string())})
    joined = apply_mapping(
        table,
        Mapping(join={"text": {"columns": ["first", "second"], "sep": sep}}),
        RecordKind.voice,
    )
    merged = apply_mapping(table, Mapping(coalesce={"text": ["first", "second"]}), RecordKind.voice)
    for i in range(3):
        parts = [v.strip() for v in (a[i], b[i]) if v is not None and v.strip()]
        # A row whose parts are all blank stays null and keeps its place (pyarrow's join
        # used to drop such rows, shifting the text of every later row up by one).
        assert joined.column("text")[i].as_py() == (sep.join(parts) if parts else None)
        assert merged.column("text")[i].as_py() == (parts[0] if parts else None)
