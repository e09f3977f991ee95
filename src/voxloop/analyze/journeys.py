"""Journeys: what happened to customers before they became dissatisfied, as n-grams.

Each customer's timeline (journey events and voices, in time order) before an anchor
moment (e.g. their first dissatisfied rating) becomes a sequence of tokens; contiguous
n-grams are counted once per customer, and each n-gram's support among the dissatisfied
is compared with its support among satisfied customers (lift with add-one smoothing),
in the spirit of contrast-set mining (Bay & Pazzani 2001, "Detecting group differences:
mining contrast sets", Data Mining and Knowledge Discovery 5(3), 213-246).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from voxloop.errors import UnusableInputError

_SEP = " → "


def ngram_support(tokens: pd.DataFrame, *, max_n: int = 3) -> pd.DataFrame:
    """Count, per n-gram, the customers whose sequence contains it.

    ``tokens`` has columns ``customer_id``, ``ts`` (sortable) and ``token``.  Returns
    columns ``ngram``, ``n`` (length) and ``customers``.  Vectorised: n-grams are built by
    shifting the sorted token column, never by looping over customers.
    """
    missing = {"customer_id", "ts", "token"} - set(tokens.columns)
    if missing:
        raise UnusableInputError(f"token table lacks columns: {', '.join(sorted(missing))}")
    if tokens.empty:
        return pd.DataFrame({"ngram": [], "n": [], "customers": []})
    ordered = tokens.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    cust = ordered["customer_id"].astype("string")
    tok = ordered["token"].astype("string")
    frames = []
    gram = tok
    valid = pd.Series(True, index=ordered.index)
    for n in range(1, max_n + 1):
        if n > 1:
            nxt = tok.shift(-(n - 1))
            same = cust.shift(-(n - 1)) == cust
            valid = valid & same.fillna(False)
            gram = gram + _SEP + nxt.fillna("")
        part = pd.DataFrame({"customer_id": cust[valid], "ngram": gram[valid]})
        part = part.drop_duplicates()
        counts = part.groupby("ngram").size().rename("customers").reset_index()
        counts["n"] = n
        frames.append(counts)
    return pd.concat(frames, ignore_index=True)


def contrast(
    focus: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    n_focus: int,
    n_reference: int,
    max_n: int = 3,
    min_customers: int = 3,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Return the n-grams most over-represented in ``focus`` against ``reference``."""
    if n_focus <= 0 or n_reference <= 0:
        return []
    a = ngram_support(focus, max_n=max_n).set_index(["ngram", "n"])["customers"]
    b = ngram_support(reference, max_n=max_n).set_index(["ngram", "n"])["customers"]
    joined = pd.concat([a.rename("focus"), b.rename("reference")], axis=1).fillna(0)
    joined = joined[joined["focus"] >= min_customers]
    support_f = joined["focus"] / n_focus
    # Add-one smoothing keeps an n-gram absent from the reference finite.
    support_r = (joined["reference"] + 1) / (n_reference + 1)
    out = joined.assign(
        support_focus=support_f,
        support_reference=joined["reference"] / n_reference,
        lift=support_f / support_r,
    ).reset_index()
    out = out.sort_values(["lift", "focus"], ascending=[False, False]).head(limit)
    records = out.to_dict(orient="records")
    return [
        {
            "ngram": str(r["ngram"]),
            "n": int(r["n"]),
            "customers": int(r["focus"]),
            "support": float(r["support_focus"]),
            "support_reference": float(r["support_reference"]),
            "lift": float(r["lift"]),
        }
        for r in records
    ]


def anchors_from_surveys(
    surveys: pd.DataFrame, *, dissatisfied_at_most: float, satisfied_at_least: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pick each customer's anchor: first dissatisfied rating, or first satisfied one.

    ``surveys`` has ``customer_id``, ``ts`` and ``overall``.  A customer who was ever
    dissatisfied belongs to the dissatisfied group only.
    """
    rated = surveys.dropna(subset=["customer_id"]).sort_values("ts", kind="stable")
    low = rated[rated["overall"] <= dissatisfied_at_most].drop_duplicates("customer_id")
    high = rated[
        (rated["overall"] >= satisfied_at_least) & ~rated["customer_id"].isin(low["customer_id"])
    ].drop_duplicates("customer_id")
    return (
        low[["customer_id", "ts"]].rename(columns={"ts": "anchor"}),
        high[["customer_id", "ts"]].rename(columns={"ts": "anchor"}),
    )


def before_anchor(tokens: pd.DataFrame, anchors: pd.DataFrame, *, days: float) -> pd.DataFrame:
    """Keep each customer's tokens in the ``days`` before their anchor (``ts`` in seconds)."""
    merged = tokens.merge(anchors, on="customer_id", how="inner")
    keep = (merged["ts"] < merged["anchor"]) & (merged["ts"] >= merged["anchor"] - days * 86400)
    return merged.loc[keep, ["customer_id", "ts", "token"]].reset_index(drop=True)
