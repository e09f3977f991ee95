"""Design matrices: turn a table of mixed columns into numeric drivers with readable names.

Numeric columns stay numeric (missing values imputed with the median, so one blank does
not drop a respondent), booleans become 0/1 and text columns become one-hot indicator
columns (the most frequent level is the reference).  Every source column is one *group*
so relative-importance methods treat a multi-level attribute as a single driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from voxloop.errors import UnusableInputError
from voxloop.ingest.readers import read_text_table

#: Target values read as the positive class when ``--positive`` is not given.
POSITIVE_TOKENS = ("yes", "true", "1", "satisfied", "churned", "churn", "positive")


@dataclass
class Design:
    """A numeric matrix with its column names and the source column (group) of each."""

    matrix: np.ndarray
    columns: list[str]
    groups: list[str]
    group_of_column: list[int] = field(default_factory=list)


@dataclass
class Encoder:
    """Learned encoding of a frame: medians of numeric columns, levels of text columns."""

    numeric: dict[str, float]
    categorical: dict[str, list[str]]
    order: list[str]

    def transform(self, frame: pd.DataFrame) -> Design:
        """Encode ``frame`` with the learned columns and levels."""
        missing = [c for c in self.order if c not in frame.columns]
        if missing:
            raise UnusableInputError(f"columns missing from the input: {', '.join(missing)}")
        blocks: list[np.ndarray] = []
        columns: list[str] = []
        group_of_column: list[int] = []
        for gi, name in enumerate(self.order):
            if name in self.numeric:
                values = _numeric(frame[name], name)
                values = np.where(np.isnan(values), self.numeric[name], values)
                blocks.append(values[:, None])
                columns.append(name)
                group_of_column.append(gi)
            else:
                levels = self.categorical[name]
                text = frame[name].astype("string").fillna("(missing)").to_numpy(dtype=object)
                # The first level is the reference category (no column of its own).
                for level in levels[1:]:
                    blocks.append((text == level).astype(np.float64)[:, None])
                    columns.append(f"{name}={level}")
                    group_of_column.append(gi)
        matrix = np.hstack(blocks) if blocks else np.empty((len(frame), 0))
        return Design(matrix, columns, list(self.order), group_of_column)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` for tree models: raw numbers (NaN kept) and level codes."""
        missing = [c for c in self.order if c not in frame.columns]
        if missing:
            raise UnusableInputError(f"columns missing from the input: {', '.join(missing)}")
        out = np.empty((len(frame), len(self.order)), dtype=np.float64)
        for i, name in enumerate(self.order):
            if name in self.numeric:
                out[:, i] = _numeric(frame[name], name)
            else:
                levels = pd.Index(self.categorical[name])
                text = frame[name].astype("string").fillna("(missing)")
                # Unseen levels become NaN: the tree sends them down its missing branch.
                code = levels.get_indexer(pd.Index(text)).astype(np.float64)
                out[:, i] = np.where(code < 0, np.nan, code)
        return out

    def categorical_indices(self) -> list[int]:
        """Return the positions of text columns in ``codes`` output."""
        return [i for i, name in enumerate(self.order) if name in self.categorical]

    def describe(self, column: int, value: float) -> str:
        """Name one encoded cell readably, e.g. ``Contract = Month-to-month``."""
        name = self.order[column]
        if np.isnan(value):
            return f"{name} = (missing)"
        if name in self.categorical:
            return f"{name} = {self.categorical[name][int(value)]}"
        return f"{name} = {value:g}"


def _numeric(series: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        # Nullable dtypes (Int64, boolean) hold pd.NA: go through float with NaN.
        return series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna() & (series.astype("string").str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UnusableInputError(
            f"row {row}: column {name!r} holds {series.iloc[row]!r}, which is not a number"
        )
    return values.to_numpy(dtype=np.float64)


def is_numeric_column(series: pd.Series) -> bool:
    """Tell whether a column is numeric or boolean (text that parses as numbers counts)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True
    values = series.dropna()
    # A sample decides most text columns cheaply; only plausible ones are parsed whole.
    for part in (values.iloc[:1000], values):
        stripped = part.astype("string").str.strip()
        stripped = stripped[stripped != ""]
        if stripped.empty:
            return False
        if not pd.to_numeric(stripped, errors="coerce").notna().mean() > 0.99:
            return False
    return True


def fit_encoder(frame: pd.DataFrame, *, max_levels: int = 30) -> Encoder:
    """Learn medians and one-hot levels of every column of ``frame``."""
    numeric: dict[str, float] = {}
    categorical: dict[str, list[str]] = {}
    for name in frame.columns:
        series = frame[name]
        if is_numeric_column(series):
            values = pd.to_numeric(series, errors="coerce")
            median = float(values.median()) if values.notna().any() else 0.0
            numeric[str(name)] = median
        else:
            counts = series.astype("string").fillna("(missing)").value_counts()
            levels = [str(v) for v in counts.index[:max_levels]]
            categorical[str(name)] = levels
    return Encoder(numeric, categorical, [str(c) for c in frame.columns])


def binary_target(series: pd.Series, *, positive: str | None, name: str) -> np.ndarray:
    """Turn a target column into 0/1, positive = ``positive`` or a recognised yes-token."""
    text = series.astype("string").str.strip()
    if text.isna().any():
        row = int(np.flatnonzero(text.isna().to_numpy())[0])
        raise UnusableInputError(f"row {row}: target column {name!r} is empty")
    if positive is None:
        levels = sorted(set(text.str.lower()))
        found = [lv for lv in levels if lv in POSITIVE_TOKENS]
        if len(levels) != 2 or len(found) != 1:
            raise UnusableInputError(
                f"target column {name!r} has values {levels[:5]}; say which one is the "
                "positive class with --positive"
            )
        positive_lower = found[0]
        return (text.str.lower() == positive_lower).to_numpy(dtype=np.float64)
    y = (text == positive).to_numpy(dtype=np.float64)
    if y.sum() == 0:
        raise UnusableInputError(f"target column {name!r} never equals {positive!r}")
    return y


def read_table(path: str) -> pd.DataFrame:
    """Read any file the ingest reads (CSV, JSONL, Parquet, xlsx) into a frame of text columns.

    The ingest reader parses it (``voxloop.ingest.readers.read_text_table``), so a row it
    cannot parse stops the analysis naming that row; empty cells are missing values.
    Numbers stay text here: ``is_numeric_column`` and the encoder parse them.
    """
    frame: pd.DataFrame = read_text_table(Path(path)).to_pandas()
    for name in frame.columns:
        # Empty text is a missing value, as pandas' own CSV reader has it.
        text = frame[name].astype("string").str.strip()
        frame[name] = frame[name].where(text.ne("").fillna(False), None)
    return frame
