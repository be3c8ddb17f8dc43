"""Engines: what drives a scorer over a dataset, under one keep rule and one options object.

* :mod:`.in_memory` — a ``Dataset`` through ``map`` and the rule;
* :mod:`.streaming` — the resumable, shard-writing streaming job;
* :mod:`.torchrun` — the streaming job on every rank of a torch launcher;
* :mod:`.ray` — scorers as a Ray Data actor pool (optional extra; import it explicitly);

and what they share: :class:`KeepRule` (:mod:`.keep_rule`), :class:`JobOptions`, the
:class:`RunSummary` of counts and histograms, and the :class:`FilterRun` record every run produces
(published by :mod:`hf_vlm_filter.hub`, which the engines never import).
"""

from .in_memory import InMemoryResult, run_in_memory
from .keep_rule import ColumnRule, KeepRule
from .options import JobOptions
from .predicates import judge_filter, threshold_filter, top_fraction
from .run_record import FilterRun, RunContext, ScorerInfo
from .streaming import JobResult, JobStateError, finalize_job, run_streaming_filter, streaming_filter_job
from .summary import RunSummary, ScoreHistogram

__all__ = [
    "ColumnRule",
    "FilterRun",
    "InMemoryResult",
    "JobOptions",
    "JobResult",
    "JobStateError",
    "KeepRule",
    "RunContext",
    "RunSummary",
    "ScoreHistogram",
    "ScorerInfo",
    "finalize_job",
    "judge_filter",
    "run_in_memory",
    "run_streaming_filter",
    "streaming_filter_job",
    "threshold_filter",
    "top_fraction",
]
