"""Mask personal data in free text before it is stored: typed placeholders plus counts.

Each PII type is one regular expression, applied in a fixed order so that the longest,
most specific identifiers win (an 18-digit resident ID must not be read as a card, a
card must not be read as a phone). Numeric candidates are validated — the GB 11643-1999
check digit for resident IDs and the Luhn checksum for bank cards — so random digit runs
(order numbers, amounts) stay readable. Separators people type inside numbers (spaces,
dashes, dots: ``138 0013 8000``, ``110105 19491231 002X``) are allowed where they are
common, and full-width forms (``１３８００１３８０００``, ``＠``) are folded to ASCII first —
one character for one, so spans do not move — in the rows that hold them.

``mask_array`` pre-filters rows with one vectorised RE2 match (pyarrow compute) and runs
the Python patterns only on rows that may contain PII; most voices contain none. Only
those rows cross into Python; they are put back with ``replace_with_mask`` and the counts
column is assembled from numpy offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Placeholder types, in the order they are matched.
PII_TYPES = ("EMAIL", "ID", "CARD", "PHONE", "LANDLINE", "PLATE", "ADDRESS")

COUNTS_TYPE = pa.map_(pa.string(), pa.int32())

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

_PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南"
    "|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_HAN = "\u4e00-\u9fff"
_NOT_PLACE = "[在到是址于住从往寄送给的我你他她了及或至由去为:：]"


#: Full-width digits, letters and the symbols PII is written with, and the ideographic
#: space, mapped one-to-one to ASCII (IME input often produces them in Chinese text).
_FOLD = str.maketrans(
    {
        **{0xFF10 + i: 0x30 + i for i in range(10)},
        **{0xFF21 + i: 0x41 + i for i in range(26)},
        **{0xFF41 + i: 0x61 + i for i in range(26)},
        0xFF0B: ord("+"),
        0xFF0D: ord("-"),
        0xFF0E: ord("."),
        0xFF20: ord("@"),
        0xFF3F: ord("_"),
        0x3000: ord(" "),
    }
)
_FOLDABLE = re.compile(
    "[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff0b\uff0d\uff0e\uff20\uff3f\u3000]"
)
_SEPARATORS = re.compile(r"[ .-]")
_ID_SHAPE = re.compile(
    r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
)


def id_checksum_ok(candidate: str) -> bool:
    """Return whether an 18-character resident ID has a valid GB 11643-1999 check digit."""
    body = candidate[:17]
    if len(candidate) != 18 or not body.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == candidate[17].upper()


def luhn_ok(digits: str) -> bool:
    """Return whether a digit string passes the Luhn (mod 10) checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _valid_id(match: re.Match[str]) -> bool:
    # Separators are allowed between any two characters; the bare 18 must look like an ID.
    bare = _SEPARATORS.sub("", match.group(0))
    return _ID_SHAPE.fullmatch(bare) is not None and id_checksum_ok(bare)


def _valid_card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group(0))
    return 16 <= len(digits) <= 19 and luhn_ok(digits)


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[re.Match[str]], bool] | None = None
    #: A literal every match contains; texts without it skip the pattern (same output).
    needs: str = ""


# Digits glued to letters or other digits are part of a longer token (order numbers,
# product codes), so every numeric rule demands a non-alphanumeric boundary.
_NB = r"(?<![0-9A-Za-z])"
_NA = r"(?![0-9A-Za-z])"

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "EMAIL",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        needs="@",
    ),
    _Rule(
        "ID",
        # 18 characters, a space or dash allowed between any two ("110105 19491231 002X").
        re.compile(_NB + r"[1-9](?:[ -]?\d){16}[ -]?[\dXx]" + _NA),
        _valid_id,
    ),
    _Rule("CARD", re.compile(_NB + r"\d{4}(?:[ -]?\d){12,15}" + _NA), _valid_card),
    _Rule(
        "PHONE",
        re.compile(
            _NB
            + r"(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}[ -]?\d{4}|\.\d{4}\.\d{4})"
            + _NA
            # North-American style: +1 (415) 555-0134, 415-555-0134, 415.555.0134
            + r"|"
            + _NB
            + r"(?:\+1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}"
            + _NA
        ),
    ),
    _Rule(
        "LANDLINE",
        re.compile(_NB + r"(?:\(0\d{2,3}\)\s?|0\d{2,3}[ -]?)[2-9]\d{6,7}(?:-\d{1,5})?" + _NA),
    ),
    _Rule(
        "PLATE",
        re.compile(
            rf"[{_PLATE_PROVINCES}][A-HJ-NP-Z][·• ]?[A-HJ-NP-Z0-9]{{4}}[A-HJ-NP-Z0-9挂学警]"
            r"(?:[A-HJ-NP-Z0-9](?![A-Za-z0-9]))?(?![A-Za-z0-9])"
        ),
    ),
    _Rule(
        "ADDRESS",
        re.compile(
            rf"(?:(?:{_PROVINCES})(?:省|市|自治区|特别行政区)?)?"
            # Function words before a place name are not part of it ("寄到南京市").
            rf"(?:(?:(?!{_NOT_PLACE})[{_HAN}]){{2,4}}?(?:市|州|盟))?"
            rf"(?:(?:(?!{_NOT_PLACE})[{_HAN}]){{1,4}}?(?:区|县|旗))?"
            rf"(?!{_NOT_PLACE})"
            rf"(?:(?!{_NOT_PLACE})[{_HAN}0-9]){{1,8}}?(?:路|街|大道|道|巷|弄|胡同)"
            r"\s?\d{1,5}(?:-\d{1,4})?号"
            rf"(?:(?:[{_HAN}]{{1,8}}?)?\d{{1,4}}(?:栋|幢|号楼|座|单元|室|层|楼))*"
        ),
        # The look-arounds make this the slowest rule; every address ends in a house number.
        needs="号",
    ),
)

# One RE2 pattern (no look-around) that every row holding PII matches; rows that do not
# match skip the Python pass entirely.
_PREFILTER = (
    r"@|\d{7}|\d{3}[ .-]\d{3,4}[ .-]?\d{4}|\d{4}[ -]\d{4}|\d(?:[ -]?\d){6}"
    # Seven digits with full-width ones among them (folded before the rules run), a
    # full-width at sign or plate letter.
    "|[0-9\uff10-\uff19](?:[ .\\-\u3000\uff0d\uff0e]?[0-9\uff10-\uff19]){6}|\uff20"
    f"|[{_PLATE_PROVINCES}][A-Z\uff21-\uff3a]"
    r"|(?:路|街|道|巷|弄|胡同)\s?\d+(?:-\d+)?号"
)


# The same test in Python, for folded text that had full-width characters.
_PREFILTER_PY = re.compile(_PREFILTER)


def mask_text(text: str) -> tuple[str, dict[str, int]]:
    """Replace every PII span in ``text`` with its typed placeholder; count spans per type."""
    if _FOLDABLE.search(text) is None:
        return _mask(text)
    probe = text.translate(_FOLD)
    if _PREFILTER_PY.search(probe) is None:
        return text, {}
    return _mask_folded(text, probe)


def _mask_folded(text: str, probe: str) -> tuple[str, dict[str, int]]:
    """Mask ``probe`` (``text`` folded one character for one) and keep ``text`` elsewhere.

    Each character of the masked result remembers the ``probe`` index it came from (none
    inside a placeholder), so the original full-width characters are put back exactly
    outside the masked spans. An alignment of the two strings after the fact is ambiguous
    (a space next to a masked number can pair with the wrong space), this is not. Masked
    digits are in no kept position, so none can come back.
    """
    current = probe
    origin = list(range(len(probe)))
    counts: dict[str, int] = {}
    for rule in _RULES:
        if rule.needs and rule.needs not in current:
            continue
        pieces: list[str] = []
        kept: list[int] = []
        last = n = 0
        # finditer visits the same non-overlapping matches as the ``sub`` of ``_mask``.
        for match in rule.pattern.finditer(current):
            if rule.valid is not None and not rule.valid(match):
                continue
            placeholder = f"<{rule.kind}>"
            pieces += (current[last : match.start()], placeholder)
            kept += origin[last : match.start()] + [-1] * len(placeholder)
            last = match.end()
            n += 1
        if n:
            pieces.append(current[last:])
            kept += origin[last:]
            current, origin = "".join(pieces), kept
            counts[rule.kind] = counts.get(rule.kind, 0) + n
    if not counts:
        return text, {}
    return "".join(text[o] if o >= 0 else c for c, o in zip(current, origin, strict=True)), counts


def _mask(text: str) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    for rule in _RULES:
        if rule.needs and rule.needs not in text:
            continue
        if rule.valid is None:
            # A literal replacement keeps the whole substitution in C (no callback per match).
            text, n = rule.pattern.subn(f"<{rule.kind}>", text)
        else:
            n = 0

            def _sub(match: re.Match[str], rule: _Rule = rule) -> str:
                nonlocal n
                if rule.valid is not None and not rule.valid(match):
                    return match.group(0)
                n += 1
                return f"<{rule.kind}>"

            text = rule.pattern.sub(_sub, text)
        if n:
            counts[rule.kind] = counts.get(rule.kind, 0) + n
    return text, counts


def mask_array(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Mask PII in an Arrow string array.

    Returns the masked texts (``pa.string``) and per-row counts keyed by placeholder type
    (``map<string, int32>``, empty for rows without PII, null for null texts).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"mask_array expects a string array, got {texts.type}")
    texts = texts.cast(pa.string())
    n = len(texts)
    if n == 0:
        return texts, pa.array([], type=COUNTS_TYPE)
    candidate = pc.fill_null(pc.match_substring_regex(texts, _PREFILTER), False)
    idx = pc.indices_nonzero(candidate)
    lengths = np.zeros(n, dtype=np.int32)
    keys: list[str] = []
    values: list[int] = []
    if len(idx):
        # Only candidate rows cross into Python; the rest stay in Arrow buffers.
        masked: list[str] = []
        row_lengths: list[int] = []
        for text in texts.take(idx).to_pylist():
            out, found = mask_text(text)
            masked.append(out)
            row_lengths.append(len(found))
            keys.extend(found)
            values.extend(found.values())
        texts = pc.replace_with_mask(texts, candidate, pa.array(masked, type=pa.string()))
        lengths[idx.to_numpy(zero_copy_only=False)] = row_lengths
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    counts = pa.MapArray.from_arrays(
        pa.array(offsets, type=pa.int32()),
        pa.array(keys, type=pa.string()),
        pa.array(values, type=pa.int32()),
        type=COUNTS_TYPE,
        mask=texts.is_null() if texts.null_count else None,
    )
    return texts, counts
