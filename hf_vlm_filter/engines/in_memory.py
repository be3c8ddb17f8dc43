"""The in-memory engine: score a ``Dataset`` with ``map``, apply the keep rule with ``filter``.

``datasets`` does the iteration (and the caching: a second identical run reuses the scored Arrow
files). A fraction rule is resolved here, on the whole scored column, into its cut-off threshold.

Example:
    >>> from datasets import Dataset
    >>> from PIL import Image
    >>> from hf_vlm_filter import VLMJudge
    >>> from hf_vlm_filter.engines import KeepRule, RunContext, run_in_memory
    >>> from hf_vlm_filter.models.tiny import save_tiny_model
    >>> judge = VLMJudge(str(save_tiny_model("/tmp/tiny-judge")), device="cpu")
    >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red"), None], "caption": ["a red card", "x"]})
    >>> result = run_in_memory(ds, judge, KeepRule(), RunContext("inline"))
    >>> result.summary.rows, result.summary.scored, len(result.kept)
    (2, 1, 2)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..scorers.base import map_with_scorer
from .keep_rule import KeepRule
from .observers import RowObserver
from .options import JobOptions, OutputSpec
from .run_record import FilterRun, RunContext
from .summary import RunSummary

#: The column of rejected rows that says which rule dropped them.
DROPPED_BY = "dropped_by"
#: Rows an observer is shown at a time.
OBSERVER_BATCH = 1024


@dataclass
class InMemoryResult:
    """What :func:`run_in_memory` produced: every scored row, the kept rows (and, when asked, the
    rejected ones with ``dropped_by``), the observers, and the run record (``run.rule`` is the rule as
    applied: a fraction resolved into its cut-off)."""

    scored: Any
    kept: Any
    run: FilterRun
    rejected: Any = None
    observers: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> RunSummary:
        return self.run.summary


def run_in_memory(dataset: Any, scorer: Any, rule: KeepRule, context: RunContext,
                  options: JobOptions = JobOptions(), outputs: OutputSpec = OutputSpec(),
                  observers: Sequence[RowObserver] = ()) -> InMemoryResult:
    """Score ``dataset`` (a ``datasets.Dataset``) with ``scorer`` and keep the rows ``rule`` keeps.

    ``outputs.transform`` is applied to the kept (and rejected) rows before they are returned (e.g.
    :class:`~hf_vlm_filter.inputs.portable.PortableImages`: image paths that hold outside the source);
    with ``outputs.rejected_dir`` the dropped rows come back too, in ``result.rejected``; every scored
    row is shown to each of ``observers``.
    """
    rule.check_columns(scorer)
    started = time.perf_counter()
    if len(dataset):
        scored = map_with_scorer(dataset, scorer, batch_size=options.batch_size)
    else:  # ``map`` adds no column to an empty dataset: give it the declared schema, no rows
        from datasets import Dataset

        features = scorer.output_features(dataset.features)
        scored = Dataset.from_dict({name: [] for name in features}, features=features)
    specs = scorer.score_specs
    columns = [name for spec in specs for name in (spec.column, spec.error_column)]
    table = scored.select_columns(list(dict.fromkeys(columns))).with_format(None)[:]
    applied = rule.resolve(table)
    verdicts = applied.decide(table)
    kept, rejected = scored, None
    if applied.is_filter:
        kept = scored.select([index for index, verdict in enumerate(verdicts) if not verdict])
        if outputs.rejected_dir is not None:
            dropped = [index for index, verdict in enumerate(verdicts) if verdict]
            rejected = scored.select(dropped).add_column(DROPPED_BY, [verdicts[index] for index in dropped])
    elif outputs.rejected_dir is not None:
        rejected = scored.select([]).add_column(DROPPED_BY, [])
    if outputs.transform is not None:
        kept = outputs.transform(kept)
        rejected = outputs.transform(rejected) if rejected is not None else None
    for observer in observers:
        arrow = scored.with_format("arrow")
        for start in range(0, len(scored), OBSERVER_BATCH):
            observer.observe(arrow[start : start + OBSERVER_BATCH], verdicts[start : start + OBSERVER_BATCH])
    summary = RunSummary.for_scorer(scorer, applied)
    summary.add(table, verdicts)
    summary.elapsed_seconds = time.perf_counter() - started
    return InMemoryResult(scored, kept, FilterRun.of(context, scorer, applied, summary), rejected,
                          {observer.name: observer for observer in observers})
