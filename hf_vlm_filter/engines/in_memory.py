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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..scorers.base import map_with_scorer
from .keep_rule import KeepRule
from .options import JobOptions
from .run_record import FilterRun, RunContext
from .summary import RunSummary


@dataclass
class InMemoryResult:
    """What :func:`run_in_memory` produced: every scored row, the kept rows, and the run record
    (``run.rule`` is the rule as applied: a fraction resolved into its cut-off)."""

    scored: Any
    kept: Any
    run: FilterRun

    @property
    def summary(self) -> RunSummary:
        return self.run.summary


def run_in_memory(dataset: Any, scorer: Any, rule: KeepRule, context: RunContext,
                  options: JobOptions = JobOptions(), output: Callable[[Any], Any] | None = None) -> InMemoryResult:
    """Score ``dataset`` (a ``datasets.Dataset``) with ``scorer`` and keep the rows ``rule`` keeps.

    ``output`` transforms the kept rows before they are returned (e.g.
    :class:`~hf_vlm_filter.inputs.portable.PortableImages`: image paths that hold outside the source).
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
    kept = scored
    if applied.is_filter:
        keep = [index for index, verdict in enumerate(verdicts) if not verdict]
        kept = scored.select(keep)
    if output is not None:
        kept = output(kept)
    summary = RunSummary.for_scorer(scorer, applied)
    summary.add(table, verdicts)
    summary.elapsed_seconds = time.perf_counter() - started
    return InMemoryResult(scored, kept, FilterRun.of(context, scorer, applied, summary))
