"""The builder's report: what a judge-training build made, what its gate refused, and the text-only control.

:class:`JudgeDataReport` holds, per split, the examples per transformation, per rubric score and per
level, the originals the source gate refused (by reason), and the build's settings; and, over the
whole build, the **text-only control**: a bag-of-words logistic regression trained on the train
split's *texts alone* to predict ``score >= 9``, scored (ROC AUC) on the validation split. Data that
teaches image-text judgment keeps it near 0.5; a high value means the texts give the label away
(disfluent negatives, fixed generic strings, ungrammatical swaps) and a judge can learn the label
without looking at the image.

The report is printed by the builder's recipe, written into every split's ``info.description``
(so it survives ``save_to_disk``; :func:`judge_data_report` reads it back) and into the dataset card
of :func:`~hf_vlm_filter.training.publish.push_judge_dataset`.

Example:
    >>> texts = ["a red car", "a blue car", "a red car", "a blue car"]
    >>> round(text_only_auc(texts, [10, 2, 10, 2], texts, [10, 2, 2, 10]), 2)
    0.5
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .levels import LEVEL_NAMES
from .rubric import KEEP_SCORE, RUBRIC

REPORT_MARKER = "<!-- judge-data-report "
#: At most this AUC is expected of the text-only control on realistic data (issue 17's bar).
TEXT_ONLY_TARGET = 0.65


@dataclass
class SplitReport:
    """One split of a build: examples by transformation / score / level, and the gate's refusals."""

    examples: int = 0
    per_transformation: dict[str, int] = field(default_factory=dict)
    per_score: dict[str, int] = field(default_factory=dict)
    per_level: dict[str, int] = field(default_factory=dict)
    gate_rejected: dict[str, int] = field(default_factory=dict)
    gate_demoted: int = 0
    source_rows: int = 0
    moved: int = 0
    model_fallbacks: int = 0
    rows_without_example: int = 0

    def add(self, transformation: str, score: int, level: int) -> None:
        """Count one example."""
        self.examples += 1
        for table, key in ((self.per_transformation, transformation), (self.per_score, str(score)),
                           (self.per_level, LEVEL_NAMES[level])):
            table[key] = table.get(key, 0) + 1


@dataclass
class JudgeDataReport:
    """What one judge-training build made (see the module docstring)."""

    splits: dict[str, SplitReport] = field(default_factory=dict)
    neighbours: str = ""
    gate: str = "skip"
    min_words: int = 0
    noise: bool = False
    generator: str = "offline"
    unusable_rows: int = 0
    text_only_auc: float = math.nan
    text_only_note: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JudgeDataReport:
        data = json.loads(text)
        data["splits"] = {name: SplitReport(**split) for name, split in data.get("splits", {}).items()}
        return cls(**data)

    def description(self) -> str:
        """The report as Markdown followed by its JSON (in an HTML comment), for ``info.description``."""
        return f"{self.markdown()}\n\n{REPORT_MARKER}{self.to_json()} -->\n"

    def markdown(self) -> str:
        """Tables: examples per transformation (with level and rubric score) per split, per score,
        gate refusals, and the text-only control."""
        names = list(self.splits)
        lines = ["### Examples per transformation", "",
                 "| transformation | level | score | " + " | ".join(names) + " |",
                 "|---|---|---|" + "---|" * len(names)]
        seen = sorted({t for s in self.splits.values() for t in s.per_transformation},
                      key=lambda t: (-RUBRIC[t].score if t in RUBRIC else 0, t))
        for name in seen:
            row = RUBRIC.get(name)
            counts = " | ".join(str(self.splits[s].per_transformation.get(name, 0)) for s in names)
            lines.append(f"| `{name}` | {row.level if row else '?'} | {row.score if row else '?'} | {counts} |")
        lines.append("| **all** | | | " + " | ".join(str(self.splits[s].examples) for s in names) + " |")
        lines += ["", "### Examples per rubric score", "", "| score | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        scores = sorted({int(k) for s in self.splits.values() for k in s.per_score}, reverse=True)
        for score in scores:
            lines.append(f"| {score} | " + " | ".join(str(self.splits[s].per_score.get(str(score), 0))
                                                      for s in names) + " |")
        lines += ["", "### Source gate", "",
                  f"Originals refused as positives (gate `{self.gate}`, at least {self.min_words} words):", "",
                  "| reason | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        reasons = sorted({r for s in self.splits.values() for r in s.gate_rejected})
        for reason in reasons:
            lines.append(f"| {reason} | " + " | ".join(str(self.splits[s].gate_rejected.get(reason, 0))
                                                       for s in names) + " |")
        lines.append("| **all** | " + " | ".join(str(sum(self.splits[s].gate_rejected.values())) for s in names)
                     + " |")
        demoted = sum(s.gate_demoted for s in self.splits.values())
        lines += ["", f"Source rows per split: {', '.join(f'{s} {self.splits[s].source_rows}' for s in names)}; "
                      f"unusable rows skipped (no image or caption): {self.unusable_rows}; refused originals kept as "
                      f"low-score examples: {demoted}; examples moved to another level: "
                      f"{sum(s.moved for s in self.splits.values())}; model rewrites replaced by offline ones: "
                      f"{sum(s.model_fallbacks for s in self.splits.values())}.",
                  f"Neighbours: `{self.neighbours or 'random'}`; generator: `{self.generator}`; disfluent text "
                  f"(shuffled words, character noise): {'on' if self.noise else 'off'}.",
                  "", "### Text-only control", "",
                  f"Bag-of-words logistic regression on the texts alone (train split) predicting score >= "
                  f"{KEEP_SCORE}, ROC AUC on validation: **{_figure(self.text_only_auc)}** (0.5 = the texts give "
                  f"nothing away; at most {TEXT_ONLY_TARGET} expected).{' ' + self.text_only_note if self.text_only_note else ''}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()


def judge_data_report(graded: Any) -> JudgeDataReport | None:
    """The report a build wrote into its splits' ``info.description`` (``None`` when there is none).

    Example:
        >>> judge_data_report(graded).text_only_auc   # doctest: +SKIP
        0.54
    """
    datasets = graded.values() if hasattr(graded, "values") else [graded]
    for dataset in datasets:
        text = getattr(getattr(dataset, "info", None), "description", "") or ""
        start = text.find(REPORT_MARKER)
        if start >= 0:
            end = text.find(" -->", start)
            return JudgeDataReport.from_json(text[start + len(REPORT_MARKER):end])
    return None


def text_only_auc(train_texts: Sequence[str], train_scores: Sequence[int], validation_texts: Sequence[str],
                  validation_scores: Sequence[int], *, threshold: int = KEEP_SCORE) -> float:
    """ROC AUC on validation of a bag-of-words logistic regression (unigram counts, L2, C = 1) trained
    on the train texts alone to predict ``score >= threshold``; NaN when a split has one class only.

    Needs scikit-learn (the ``[train]`` extra).
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train_labels = [int(score >= threshold) for score in train_scores]
    validation_labels = [int(score >= threshold) for score in validation_scores]
    if len(set(train_labels)) < 2 or len(set(validation_labels)) < 2:
        return math.nan
    vectorizer = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")
    features = vectorizer.fit_transform(list(train_texts))
    model = LogisticRegression(C=1.0, max_iter=2000).fit(features, train_labels)
    probabilities = model.predict_proba(vectorizer.transform(list(validation_texts)))[:, 1]
    return float(roc_auc_score(validation_labels, probabilities))


def grouped_text_only_auc(texts: Sequence[str], scores: Sequence[int], groups: Sequence[str], *, folds: int = 5,
                          threshold: int = KEEP_SCORE) -> float:
    """:func:`text_only_auc` cross-validated over ``folds`` folds of whole groups (images): the pooled
    out-of-fold probabilities' AUC. For small sources whose validation split is too small to read."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    labels = [int(score >= threshold) for score in scores]
    names = sorted(set(groups))
    fold_of = {name: i % folds for i, name in enumerate(names)}
    predicted = [math.nan] * len(texts)
    for fold in range(folds):
        train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
        held = [i for i, g in enumerate(groups) if fold_of[g] == fold]
        if not held or len({labels[i] for i in train}) < 2:
            continue
        vectorizer = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")
        model = LogisticRegression(C=1.0, max_iter=2000).fit(
            vectorizer.fit_transform([texts[i] for i in train]), [labels[i] for i in train])
        for i, p in zip(held, model.predict_proba(vectorizer.transform([texts[i] for i in held]))[:, 1]):
            predicted[i] = float(p)
    kept = [i for i, p in enumerate(predicted) if not math.isnan(p)]
    if len({labels[i] for i in kept}) < 2:
        return math.nan
    return float(roc_auc_score([labels[i] for i in kept], [predicted[i] for i in kept]))


def _figure(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


__all__ = ["JudgeDataReport", "SplitReport", "TEXT_ONLY_TARGET", "grouped_text_only_auc", "judge_data_report",
           "text_only_auc"]
