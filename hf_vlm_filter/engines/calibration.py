"""Calibration: how far the judge's fast mode is from its faithful mode, on the user's own rows.

Fast mode reads the score right after a forced ``score: {`` (one forward pass); the judge was
trained to write a justification first. :func:`calibrate` scores the same rows in fast mode and in
reference mode (the seed's procedure; or justify mode) and measures what a user choosing between
them needs:

* **rank agreement** — Spearman and Kendall (tau-b) between the two scores, over the rows both
  modes scored;
* **keep sets at the threshold** — fast keeps ``score >= threshold``, reference keeps its parsed
  score ``>= threshold`` (an unparseable answer is dropped, as the seed drops it): how many each
  keeps, precision (share of fast's keeps that reference keeps), recall (share of reference's keeps
  that fast keeps) and Jaccard;
* **fast-mode thresholds** — the one whose keep set best reproduces the reference keep set (highest
  Jaccard; ties: the kept count closest to reference's, then the higher threshold) and the one that
  keeps the same number of rows;
* **pairs/s of each mode**, measured on these rows, on this machine;
* **the 20 most disagreeing rows** (largest ``|fast - reference|``) with the judge's justification;
* **the seed's image path** — fast mode scored again with the other ``seed_image_path`` setting: how
  many rows it gives other pixels or another patch grid
  (:func:`~hf_vlm_filter.models.seed_image_path.seed_path_effect`), how much the scores move, and
  the agreement with reference either way.

:meth:`Calibration.save` writes ``calibration.json`` (read back, validated, by :func:`load_calibration`),
``rows.parquet`` (every row's scores) and ``calibration.png`` (a scatter; needs matplotlib, else one
warning and no picture). :func:`calibration_facts` is what a dataset card shows of it.

Example:
    >>> from hf_vlm_filter.engines.calibration import spearman, kendall_tau_b
    >>> spearman([1, 2, 3, 4], [10, 30, 20, 40]), kendall_tau_b([1, 2, 3, 4], [10, 30, 20, 40])
    (0.8, 0.6666666666666666)
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__

logger = logging.getLogger(__name__)

FORMAT = "hf_vlm_filter.calibration"
VERSION = 1
CALIBRATION_FILE = "calibration.json"
ROWS_FILE = "rows.parquet"
SCATTER_FILE = "calibration.png"
#: Modes fast mode can be calibrated against.
AGAINST = ("reference", "justify")
DEFAULT_ROWS = 500
DEFAULT_THRESHOLD = 9.0
DISAGREEMENTS = 20
#: Keys a calibration file must have (checked by :func:`load_calibration`), and their types.
REQUIRED = {
    "format": str, "version": int, "model": str, "against": str, "threshold": (int, float), "rows": dict,
    "correlation": dict, "keep_sets": dict, "best_fast_threshold": dict, "same_fraction_threshold": dict,
    "pairs_per_second": dict, "disagreements": list,
}


# ---- rank correlation ---------------------------------------------------------------------------
def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; tied values share the mean of their ranks)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def _pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two 1-D sequences of one length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("rank correlation of non-finite values: drop the NaN rows first")
    return x, y


def spearman(x: Any, y: Any) -> float | None:
    """Spearman's rho with tied ranks averaged (Pearson of the average ranks); ``None`` when fewer
    than two rows or a constant side leave it undefined.

    Example:
        >>> spearman([1, 2, 2, 3], [1, 3, 2, 4])
        0.9486832980505138
    """
    x, y = _pairs(x, y)
    if len(x) < 2:
        return None
    rx, ry = _ranks(x) - (len(x) + 1) / 2.0, _ranks(y) - (len(y) + 1) / 2.0
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else None


def kendall_tau_b(x: Any, y: Any, chunk: int = 2048) -> float | None:
    """Kendall's tau-b (ties on either side accounted for), exact over all pairs in chunks;
    ``None`` when undefined (fewer than two rows, or a constant side).

    Example:
        >>> kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 4])
        0.9128709291752769
    """
    x, y = _pairs(x, y)
    n = len(x)
    if n < 2:
        return None
    concordant = tied_x = tied_y = 0.0
    for start in range(0, n, chunk):
        dx = np.sign(x[start : start + chunk, None] - x[None, :])
        dy = np.sign(y[start : start + chunk, None] - y[None, :])
        concordant += float((dx * dy).sum())
        tied_x += float((dx == 0).sum())
        tied_y += float((dy == 0).sum())
    pairs = n * (n - 1)  # ordered pairs; the diagonal is a tie on both sides
    tied_x, tied_y = tied_x - n, tied_y - n
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    return concordant / denominator if denominator > 0 else None


# ---- keep sets ---------------------------------------------------------------------------------
def keep_agreement(fast_keep: Any, reference_keep: Any) -> dict[str, Any]:
    """Counts, precision, recall and Jaccard of fast's keep set against reference's (boolean masks
    over the same rows). A ratio with nothing to divide by is ``None``; two empty sets have Jaccard 1.

    Example:
        >>> keep_agreement([True, True, False, False], [True, False, True, False])
        {'fast_kept': 2, 'reference_kept': 2, 'both_kept': 1, 'precision': 0.5, 'recall': 0.5, 'jaccard': 0.3333333333333333}
    """
    fast, reference = np.asarray(fast_keep, dtype=bool), np.asarray(reference_keep, dtype=bool)
    both, either = int((fast & reference).sum()), int((fast | reference).sum())
    kept, wanted = int(fast.sum()), int(reference.sum())
    return {
        "fast_kept": kept, "reference_kept": wanted, "both_kept": both,
        "precision": both / kept if kept else None,
        "recall": both / wanted if wanted else None,
        "jaccard": both / either if either else 1.0,
    }


def best_fast_threshold(fast: Any, reference_keep: Any) -> dict[str, Any]:
    """The fast-mode threshold (keep ``score >= t``) whose keep set best reproduces
    ``reference_keep``: the highest Jaccard, then the kept count closest to reference's, then the
    higher ``t``; ``threshold`` is ``None`` when keeping nothing is best (reference keeps nothing).

    Example:
        >>> best_fast_threshold([9.5, 8.0, 7.0, 3.0], [True, False, True, False])["threshold"]
        7.0
    """
    scores, wanted = np.asarray(fast, dtype=np.float64), np.asarray(reference_keep, dtype=bool)
    total = int(wanted.sum())
    best: tuple[tuple[float, int, float], float | None] = ((1.0 if total == 0 else 0.0, -total, math.inf), None)
    order = np.argsort(-scores, kind="mergesort")
    ordered = scores[order]
    inside = np.cumsum(wanted[order])
    for k in range(1, len(ordered) + 1):
        if k < len(ordered) and ordered[k] == ordered[k - 1]:
            continue  # a threshold keeps every row of a tie
        both = int(inside[k - 1])
        jaccard = both / (k + total - both) if k + total - both else 1.0
        key = (jaccard, -abs(k - total), float(ordered[k - 1]))
        if key > best[0]:
            best = (key, float(ordered[k - 1]))
    threshold = best[1]
    keep = scores >= threshold if threshold is not None else np.zeros(len(scores), dtype=bool)
    return {"threshold": threshold, **keep_agreement(keep, wanted)}


def same_fraction_threshold(fast: Any, reference_keep: Any) -> dict[str, Any]:
    """The fast-mode threshold that keeps as many rows as reference keeps: its ``k``-th highest score
    (rows tied with it are kept too); ``None`` when reference keeps nothing.

    Example:
        >>> same_fraction_threshold([9.5, 8.0, 7.0, 3.0], [True, False, True, False])["threshold"]
        8.0
    """
    scores, wanted = np.asarray(fast, dtype=np.float64), np.asarray(reference_keep, dtype=bool)
    total = int(wanted.sum())
    if total == 0:
        return {"threshold": None, **keep_agreement(np.zeros(len(scores), dtype=bool), wanted)}
    threshold = float(np.sort(scores)[::-1][total - 1])
    return {"threshold": threshold, **keep_agreement(scores >= threshold, wanted)}


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """A calibration: the JSON-ready ``report`` and the per-row ``rows`` (a ``datasets.Dataset``:
    ``row``, ``fast_score``, ``fast_error``, ``reference_score``, ``reference_error``,
    ``reference_output``, and with the seed comparison ``fast_other_score`` and ``seed_path``)."""

    report: dict[str, Any]
    rows: Any
    files: dict[str, Path] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``calibration.json``, ``rows.parquet`` and (with matplotlib) ``calibration.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"rows": out / ROWS_FILE}
        self.rows.to_parquet(str(files["rows"]))
        scatter = try_save_scatter(self, out / SCATTER_FILE)
        if scatter is not None:
            files["scatter"] = scatter
        self.report["files"] = {name: path.name for name, path in files.items()}
        self.report["files"].setdefault("scatter", None)
        files["calibration"] = out / CALIBRATION_FILE
        text = json.dumps(self.report, indent=2, ensure_ascii=False, allow_nan=False)
        files["calibration"].write_text(text + "\n", encoding="utf-8")
        self.files = files
        return files

    def summary_lines(self) -> list[str]:
        """A few lines for a terminal."""
        report = self.report
        keep, corr, speed = report["keep_sets"], report["correlation"], report["pairs_per_second"]
        best, same = report["best_fast_threshold"], report["same_fraction_threshold"]
        lines = [
            f"{report['rows']['scored_by_both']} of {report['rows']['read']} rows scored in fast and "
            f"{report['against']} mode",
            f"spearman {_fmt(corr['spearman'])}, kendall {_fmt(corr['kendall'])}",
            f"at threshold {report['threshold']:g}: fast keeps {keep['fast_kept']}, {report['against']} keeps "
            f"{keep['reference_kept']}, both {keep['both_kept']} (precision {_fmt(keep['precision'])}, recall "
            f"{_fmt(keep['recall'])}, jaccard {_fmt(keep['jaccard'])})",
            f"fast threshold reproducing the {report['against']} keep set best: "
            f"{_fmt(best['threshold'])} (jaccard {_fmt(best['jaccard'])}); "
            f"keeping the same number of rows: {_fmt(same['threshold'])}",
            f"pairs/s: fast {_fmt(speed['fast'])}, {report['against']} {_fmt(speed[report['against']])}",
        ]
        seed = report.get("seed_image_path")
        if seed:
            lines.append(f"seed image path: {seed['rows_by_path'].get('other grid', 0)} rows on another patch grid, "
                         f"{seed['rows_by_path'].get('same grid, other pixels', 0)} with other pixels; fast score moves "
                         f"by {_fmt(seed['mean_abs_difference'])} on average (max {_fmt(seed['max_abs_difference'])})")
        return lines


def calibrate(
    dataset: Any,
    judge: Any,
    *,
    rows: int = DEFAULT_ROWS,
    threshold: float = DEFAULT_THRESHOLD,
    against: str = "reference",
    batch_size: int | None = None,
    seed_effect: bool = True,
    source: str | None = None,
    out_dir: str | Path | None = None,
) -> Calibration:
    """Score the first ``rows`` rows of ``dataset`` in fast mode and in ``against`` mode and compare.

    Args:
        dataset: a ``datasets.Dataset`` or ``IterableDataset`` of image-caption pairs.
        judge: a :class:`~hf_vlm_filter.scorers.compact_judge.VLMJudge` (its options: checkpoint,
            budget, columns, device...; its mode is replaced) or a checkpoint id / folder.
        rows: how many rows (the first ones) to score.
        threshold: the keep threshold both modes are compared at.
        against: ``"reference"`` (the seed's parsed score) or ``"justify"``.
        batch_size: rows per ``map`` batch (default: 4 micro-batches).
        seed_effect: also score fast mode with the other ``seed_image_path`` setting.
        source: what the rows came from, recorded in the report.
        out_dir: when given, :meth:`Calibration.save` there.

    Example:
        >>> from hf_vlm_filter import VLMJudge
        >>> result = calibrate(ds, VLMJudge("./judge", device="cuda"), rows=500, out_dir="calibration/")  # doctest: +SKIP
        >>> result.report["keep_sets"]["jaccard"], result.report["best_fast_threshold"]["threshold"]  # doctest: +SKIP
        (0.71, 8.62)
    """
    from datasets import Dataset, IterableDataset

    from ..scorers.compact_judge import VLMJudge

    if against not in AGAINST:
        raise ValueError(f"against must be one of {AGAINST}, got {against!r}")
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if isinstance(judge, (str, Path)):
        judge = VLMJudge(str(judge))
    if isinstance(dataset, IterableDataset):
        dataset = Dataset.from_list(list(dataset.take(rows)), features=dataset.features)
    elif len(dataset) > rows:
        dataset = dataset.select(range(rows))
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset has no rows to calibrate on")
    fast = judge.with_options(mode="fast", return_probs=False, return_text=False)
    slow = judge.with_options(mode=against, return_probs=False, return_text=True)
    batch_size = batch_size or 4 * (fast.config.micro_batch_size or 16)
    fast_scores, fast_errors, fast_seconds = _score(dataset, fast, batch_size)
    slow_out, slow_seconds = _map(dataset, slow, batch_size)
    slow_scores = np.asarray(slow_out["judge_score"], dtype=np.float64)
    slow_errors = list(slow_out["judge_error"])
    slow_text = list(slow_out["judge_output"])
    notes = list(slow_out["judge_note"]) if "judge_note" in slow_out.column_names else [""] * n

    scored = np.isfinite(fast_scores)
    both = scored & np.isfinite(slow_scores)
    fast_keep = scored & (np.nan_to_num(fast_scores, nan=-np.inf) >= threshold)
    slow_keep = scored & (np.nan_to_num(slow_scores, nan=-np.inf) >= threshold)
    universe = np.flatnonzero(scored)
    speeds = {"fast": n / fast_seconds, against: n / slow_seconds}
    report: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__,
        "source": source,
        "model": fast.config.model, "revision": fast.config.revision,
        "against": against, "threshold": float(threshold),
        "judges": {"fast": _facts(fast), against: _facts(slow)},
        "rows": {
            "requested": rows, "read": n, "scored_by_fast": int(scored.sum()),
            "scored_by_both": int(both.sum()),
            "fast_errors": dict(Counter(e for e in fast_errors if e)),
            f"{against}_errors": dict(Counter(e for e, s in zip(slow_errors, scored) if e and s)),
        },
        "correlation": {
            "rows": int(both.sum()),
            "spearman": spearman(fast_scores[both], slow_scores[both]) if both.sum() else None,
            "kendall": kendall_tau_b(fast_scores[both], slow_scores[both]) if both.sum() else None,
        },
        "keep_sets": {"threshold": float(threshold), **keep_agreement(fast_keep[universe], slow_keep[universe])},
        "best_fast_threshold": best_fast_threshold(fast_scores[universe], slow_keep[universe]),
        "same_fraction_threshold": same_fraction_threshold(fast_scores[universe], slow_keep[universe]),
        "pairs_per_second": speeds,
        "seconds": {"fast": fast_seconds, against: slow_seconds},
        "disagreements": _disagreements(dataset, fast, fast_scores, slow_scores, slow_text, notes),
    }
    table = {
        "row": list(range(n)), "fast_score": fast_scores.tolist(), "fast_error": fast_errors,
        "reference_score": slow_scores.tolist(), "reference_error": slow_errors, "reference_output": slow_text,
    }
    if seed_effect:
        other = fast.with_options(seed_image_path=not fast.config.uses_seed_image_path)
        other_scores, _other_errors, other_seconds = _score(dataset, other, batch_size)
        paths = _seed_paths(dataset, fast)
        with_seed, without = (fast_scores, other_scores) if fast.config.uses_seed_image_path else (other_scores, fast_scores)
        report["seed_image_path"] = _seed_report(with_seed, without, slow_scores, threshold, paths,
                                                fast.config.uses_seed_image_path)
        report["pairs_per_second"]["fast_other_seed_image_path"] = n / other_seconds
        table["fast_other_score"] = other_scores.tolist()
        table["seed_path"] = paths
    result = Calibration(report, Dataset.from_dict(table))
    if out_dir is not None:
        result.save(out_dir)
    return result


def _map(dataset: Any, judge: Any, batch_size: int) -> tuple[Any, float]:
    from ..scorers.base import map_with_scorer

    judge.load()  # loading is not part of the measured pairs/s
    started = time.perf_counter()
    out = map_with_scorer(dataset, judge, batch_size=batch_size, load_from_cache_file=False)
    return out, max(time.perf_counter() - started, 1e-9)


def _score(dataset: Any, judge: Any, batch_size: int) -> tuple[np.ndarray, list[str], float]:
    out, seconds = _map(dataset, judge, batch_size)
    return np.asarray(out["judge_score"], dtype=np.float64), list(out["judge_error"]), seconds


def _facts(judge: Any) -> dict[str, Any]:
    facts = judge.card_facts()[0]
    facts.pop("prompt", None)
    return facts


def _disagreements(dataset: Any, judge: Any, fast: np.ndarray, slow: np.ndarray, texts: list[str],
                   notes: list[str], count: int = DISAGREEMENTS) -> list[dict[str, Any]]:
    both = np.flatnonzero(np.isfinite(fast) & np.isfinite(slow))
    gaps = np.abs(fast[both] - slow[both])
    picked = both[np.argsort(-gaps, kind="mergesort")[:count]]
    text_column = judge.column(dataset[:1], "text_column")
    image_column = judge.column(dataset[:1], "image_column")
    rows = []
    for index in picked.tolist():
        row = dataset[index]
        entry = {"row": index, "caption": row.get(text_column), "image": _image_name(row.get(image_column)),
                 "fast_score": float(fast[index]), "reference_score": float(slow[index]),
                 "difference": float(fast[index] - slow[index]), "justification": texts[index]}
        if notes[index]:
            entry["note"] = notes[index]
        rows.append(entry)
    return rows


def _image_name(cell: Any) -> str | None:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dict) and isinstance(cell.get("path"), str):
        return cell["path"]
    return None


def _seed_paths(dataset: Any, judge: Any) -> list[str]:
    """How the seed's image path treats each row's image at the judge's budget (decoded as the judge
    decodes it: EXIF rotation and small-image upscaling included)."""
    from ..inputs import load_image
    from ..models.seed_image_path import seed_path_effect

    low, high = judge.preprocessing.pixel_budget
    policy = judge.image_policy()
    column = judge.column(dataset[:1], "image_column")
    paths = []
    for cell in dataset.with_format(None)[column]:
        try:
            image = load_image(cell, policy)
            paths.append(seed_path_effect(image.height, image.width, min_pixels=low, max_pixels=high))
        except Exception:  # noqa: BLE001 - the judge refused this image (its reason is in the row)
            paths.append("not decoded")
    return paths


def _seed_report(with_seed: np.ndarray, without: np.ndarray, slow: np.ndarray, threshold: float, paths: list[str],
                 fast_uses_it: bool) -> dict[str, Any]:
    both = np.isfinite(with_seed) & np.isfinite(without)
    gaps = np.abs(with_seed[both] - without[both])
    keep_with, keep_without = with_seed[both] >= threshold, without[both] >= threshold
    reference = np.isfinite(slow) & both
    slow_keep = np.nan_to_num(slow, nan=-np.inf)[both] >= threshold
    return {
        "fast_mode_uses_it": fast_uses_it,
        "rows_by_path": dict(Counter(paths)),
        "rows": int(both.sum()),
        "spearman": spearman(with_seed[both], without[both]) if both.sum() else None,
        "mean_abs_difference": float(gaps.mean()) if gaps.size else None,
        "max_abs_difference": float(gaps.max()) if gaps.size else None,
        "keep_sets": {"with_kept": int(keep_with.sum()), "without_kept": int(keep_without.sum()),
                      "jaccard": keep_agreement(keep_with, keep_without)["jaccard"]},
        "against_reference": {
            "with": {"spearman": spearman(with_seed[reference], slow[reference]) if reference.sum() else None,
                     **keep_agreement(keep_with, slow_keep)},
            "without": {"spearman": spearman(without[reference], slow[reference]) if reference.sum() else None,
                        **keep_agreement(keep_without, slow_keep)},
        },
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ---- the picture ---------------------------------------------------------------------------------
def save_scatter(calibration: Calibration, path: str | Path) -> Path:
    """Draw fast score against reference score (one dot per row scored by both, the reference axis
    jittered to show ties), with the threshold and the best fast threshold; raises ``ImportError``
    without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("the calibration scatter needs matplotlib: pip install matplotlib") from exc
    report, table = calibration.report, calibration.rows
    fast = np.asarray(table["fast_score"], dtype=np.float64)
    slow = np.asarray(table["reference_score"], dtype=np.float64)
    both = np.isfinite(fast) & np.isfinite(slow)
    jitter = ((np.arange(len(fast)) * 0.6180339887) % 1.0 - 0.5) * 0.3
    figure = Figure(figsize=(5.5, 5.0), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    axis.scatter(slow[both] + jitter[both], fast[both], s=12, alpha=0.6, color="#4c72b0")
    threshold = report["threshold"]
    axis.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
    axis.axhline(threshold, color="#c44e52", linestyle="--")
    best = report["best_fast_threshold"]["threshold"]
    if best is not None:
        axis.axhline(best, color="#55a868", linestyle=":", label=f"best fast threshold {best:.3g}")
    axis.set_xlim(0.5, 10.5)
    axis.set_ylim(0.5, 10.5)
    axis.set_xlabel(f"{report['against']} score")
    axis.set_ylabel("fast score (expected)")
    corr = report["correlation"]
    axis.set_title(f"{int(both.sum())} rows: spearman {_fmt(corr['spearman'])}, kendall {_fmt(corr['kendall'])}",
                   fontsize=10)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def try_save_scatter(calibration: Calibration, path: str | Path) -> Path | None:
    """:func:`save_scatter`, or ``None`` and one warning line without matplotlib."""
    try:
        return save_scatter(calibration, path)
    except ImportError as exc:
        logger.warning("%s; %s not written", exc, Path(path).name)
        return None


# ---- reading it back -----------------------------------------------------------------------------
def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read and check a ``calibration.json``; ``ValueError`` with a one-line reason when it is not one.

    Example:
        >>> load_calibration("/no/such/calibration.json")
        Traceback (most recent call last):
        ...
        ValueError: calibration file /no/such/calibration.json does not exist
    """
    path = Path(path)
    if path.is_dir():
        path = path / CALIBRATION_FILE
    if not path.is_file():
        raise ValueError(f"calibration file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"calibration file {path} is not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a calibration file (no \"format\": \"{FORMAT}\"); "
                         "write one with hf-vlm-filter calibrate")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise ValueError(f"{path}: calibration format version {data.get('version')!r} is newer than this "
                         f"library reads ({VERSION}); upgrade hf_vlm_filter")
    for key, kind in REQUIRED.items():
        if key not in data:
            raise ValueError(f"{path}: calibration file lacks {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise ValueError(f"{path}: {key!r} should be {_kind(kind)}, got {type(data[key]).__name__}")
    if data["against"] not in AGAINST:
        raise ValueError(f"{path}: 'against' must be one of {AGAINST}, got {data['against']!r}")
    for section, keys in (("correlation", ("spearman", "kendall")), ("keep_sets", ("precision", "recall", "jaccard")),
                          ("best_fast_threshold", ("threshold", "jaccard")),
                          ("same_fraction_threshold", ("threshold",)), ("pairs_per_second", ("fast", data["against"])),
                          ("rows", ("read", "scored_by_both"))):
        for key in keys:
            if key not in data[section]:
                raise ValueError(f"{path}: calibration file lacks {section}.{key}")
            value = data[section][key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{path}: {section}.{key} should be a number or null, got {value!r}")
    return data


def _kind(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "dict": "an object",
                        "list": "a list"}[k.__name__] for k in kinds)


def calibration_facts(calibration: dict[str, Any]) -> dict[str, Any]:
    """The facts a dataset card shows of a calibration (a :func:`load_calibration` result), flat and
    in display order.

    Example:
        >>> facts = calibration_facts({"model": "j", "revision": None, "against": "reference", "threshold": 9.0,
        ...     "created": "2026-12-01", "rows": {"read": 500, "scored_by_both": 498},
        ...     "correlation": {"spearman": 0.81, "kendall": 0.66},
        ...     "keep_sets": {"fast_kept": 80, "reference_kept": 90, "precision": 0.9, "recall": 0.8, "jaccard": 0.74},
        ...     "best_fast_threshold": {"threshold": 8.6, "jaccard": 0.8},
        ...     "same_fraction_threshold": {"threshold": 8.7, "jaccard": 0.79},
        ...     "pairs_per_second": {"fast": 95.0, "reference": 31.0}})
        >>> facts["keep-set jaccard at 9"], facts["pairs/s (fast / reference)"]
        ('0.74', '95 / 31')
    """
    against, threshold = calibration["against"], calibration["threshold"]
    keep, corr = calibration["keep_sets"], calibration["correlation"]
    best, same = calibration["best_fast_threshold"], calibration["same_fraction_threshold"]
    speed = calibration["pairs_per_second"]
    facts = {
        "calibrated against": f"{against} mode",
        "checkpoint": calibration["model"] + (f"@{calibration['revision']}" if calibration.get("revision") else ""),
        "rows": f"{calibration['rows']['scored_by_both']} scored by both modes of {calibration['rows']['read']}",
        "spearman / kendall": f"{_fmt(corr['spearman'])} / {_fmt(corr['kendall'])}",
        f"keep-set precision / recall at {threshold:g}": f"{_fmt(keep['precision'])} / {_fmt(keep['recall'])}",
        f"keep-set jaccard at {threshold:g}": _fmt(keep["jaccard"]),
        "fast threshold reproducing the keep set best": f"{_fmt(best['threshold'])} (jaccard {_fmt(best['jaccard'])})",
        "fast threshold keeping the same fraction": _fmt(same["threshold"]),
        f"pairs/s (fast / {against})": f"{_fmt(speed['fast'])} / {_fmt(speed[against])}",
        "calibrated on": calibration.get("created"),
    }
    seed = calibration.get("seed_image_path")
    if seed:
        paths = seed.get("rows_by_path", {})
        facts["seed image path"] = (f"{paths.get('other grid', 0)} rows on another grid, "
                                    f"{paths.get('same grid, other pixels', 0)} with other pixels; mean fast-score "
                                    f"change {_fmt(seed.get('mean_abs_difference'))}")
    return facts
