"""Another cut on a finished run, without rescoring: the rule it would be, and what it would keep.

:func:`preview_rule` is the run's keep rule with some thresholds replaced (``--threshold`` on the
first score column, ``--threshold-for COLUMN=VALUE`` on any), in each column's declared direction;
:func:`estimate_kept` applies a rule to the report sample's uniform score sample and scales it to
the run's rows (exact when the sample holds every row).

Example:
    >>> from hf_vlm_filter.engines.keep_rule import ColumnRule, KeepRule
    >>> from hf_vlm_filter.engines.run_record import FilterRun
    >>> from hf_vlm_filter.engines.summary import RunSummary
    >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
    >>> spec = ScoreSpec("caption_ppl", "caption_ppl_error", direction="lower", low=1.0)
    >>> run = FilterRun("pairs.json", rule=KeepRule((ColumnRule("caption_ppl", "lower", threshold=340.0),)),
    ...                 summary=RunSummary(specs=(spec,)))
    >>> preview_rule(run, threshold=200).describe()
    'caption_ppl <= 200, errors dropped'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..engines.keep_rule import ColumnRule, KeepRule
from ..engines.run_record import FilterRun


def preview_rule(run: FilterRun, threshold: float | None = None,
                 threshold_for: Mapping[str, float] | None = None) -> KeepRule:
    """``run``'s rule (as applied: a fraction is its cut-off) with ``threshold`` on the first score
    column and ``threshold_for`` on the named ones; ``ValueError`` for a column the run did not score."""
    if run.summary is None or not run.summary.specs:
        raise ValueError("the run record has no summary of its score columns")
    specs = {spec.column: spec for spec in run.summary.specs}
    thresholds = dict(run.rule.thresholds)
    if threshold is not None:
        thresholds[run.summary.specs[0].column] = float(threshold)
    for column, value in (threshold_for or {}).items():
        if column not in specs:
            raise ValueError(f"--threshold-for {column}: the run scored {list(specs)}, not {column!r}")
        thresholds[column] = float(value)
    order = [spec.column for spec in run.summary.specs]
    rules = tuple(ColumnRule(column, specs[column].direction, threshold=thresholds[column])
                  for column in sorted(thresholds, key=order.index))
    return KeepRule(rules, run.rule.keep_errors)


@dataclass(frozen=True)
class KeptEstimate:
    """Rows a rule keeps of a run: ``kept`` of ``rows``, from a sample of ``sampled`` rows
    (``exact``: the sample holds every row).

    Example:
        >>> KeptEstimate(250, 1000, 100, False).describe()
        '~250 of 1000 (25.0%; estimated from a uniform sample of 100 rows)'
    """

    kept: int
    rows: int
    sampled: int
    exact: bool

    def describe(self) -> str:
        how = "exact: the sample holds every row" if self.exact else f"estimated from a uniform sample of {self.sampled} rows"
        share = f"{self.kept / self.rows:.1%}" if self.rows else "n/a"
        return f"{'' if self.exact else '~'}{self.kept} of {self.rows} ({share}; {how})"


def estimate_kept(sample: Any, rule: KeepRule, rows: int) -> KeptEstimate:
    """What ``rule`` keeps of a run of ``rows`` rows, from ``sample``'s uniform score sample (a
    :class:`~hf_vlm_filter.reports.gallery.GallerySample`)."""
    table = sample.score_table()
    sampled = len(next(iter(table.values()))) if table else 0
    if not sampled:
        return KeptEstimate(0, rows, 0, rows == 0)
    kept = sum(1 for verdict in rule.decide(table) if not verdict)
    exact = sampled == rows
    return KeptEstimate(kept if exact else round(kept / sampled * rows), rows, sampled, exact)
