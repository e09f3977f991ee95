"""Services of the detect domain: NAB evaluation, count series, surges, pipeline stage."""

from __future__ import annotations

from pathlib import Path

from voxloop.detect import nab
from voxloop.detect.anomaly import nab_detector, nab_round


def nab_scores(*, files: list[nab.NabFile], detector: str) -> list[nab.FloatArray]:
    """Run a fresh detector online over every NAB file; return the anomaly scores.

    Scores are rounded to 12 significant digits like NAB's result files, so a detector
    ported from NAB reproduces its published counts exactly.
    """
    out: list[nab.FloatArray] = []
    for f in files:
        det = nab_detector(detector, values=f.values, probation=f.probation)
        scores = det.score_learn_many(f.values)
        out.append(nab_round(scores))
    return out


def evaluate_nab(
    *, data_dir: Path, detector: str = "context_ensemble", names: list[str] | None = None
) -> dict[str, nab.CorpusResult]:
    """Score ``detector`` on the NAB corpus (or the named files) under the three profiles."""
    files = nab.load_corpus(data_dir, names=names)
    scores = nab_scores(files=files, detector=detector)
    return {name: nab.score_corpus(files, scores, name) for name in nab.PROFILES}
