"""The report of a run as one self-contained HTML page: what ran, the counts, a histogram per score
column with the threshold drawn, the scorers' agreement, the calibration when there is one, and a
gallery of sampled rows (per score bin, nearest the threshold on each side, the errors).

Everything comes from the run record (:class:`~hf_vlm_filter.engines.run_record.FilterRun`, its
summary's histograms) and the report sample (:class:`~hf_vlm_filter.reports.gallery.GallerySample`);
thumbnails are embedded as ``data:`` JPEGs, charts as inline SVG, so the file opens anywhere, with
no server and no network. Every caption, reason, path and fact is escaped (``html.escape``):
markup in a caption shows as text. A ``rule`` other than the run's previews another cut: verdicts
of the sampled rows are decided again and the kept count is estimated from the score sample.

Example:
    >>> from hf_vlm_filter.engines.run_record import FilterRun
    >>> from hf_vlm_filter.engines.summary import RunSummary
    >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
    >>> spec = ScoreSpec("clip_score", "clip_error", low=-1.0, high=1.0)
    >>> summary = RunSummary(specs=(spec,))
    >>> summary.add({"clip_score": [0.2, 0.3], "clip_error": ["", ""]})
    >>> html = render_report(FilterRun("pairs.json", summary=summary))
    >>> '<td data-count="rows">2</td>' in html, html.count('class="bar ')
    (True, 10)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..engines.keep_rule import KeepRule
from ..engines.run_record import FilterRun
from ..engines.summary import DISPLAY_BINS
from .charts import histogram_svg, label, scatter_svg
from .gallery import GallerySample, SampleRow
from .page import page
from .preview import estimate_kept
from .thumbnails import jpeg_size

#: Disagreeing rows of a calibration shown at most.
CALIBRATION_ROWS = 10


def find_calibration(run: FilterRun) -> dict[str, Any] | None:
    """The calibration ``run`` was given (``--calibration``, ``RunContext(calibration=...)``), if any.

    Example:
        >>> find_calibration(FilterRun("x", calibration={"rows": 3})), find_calibration(FilterRun("x"))
        ({'rows': 3}, None)
    """
    return dict(run.calibration) if isinstance(run.calibration, Mapping) else None


def render_report(run: FilterRun, sample: GallerySample | None = None, *, rule: KeepRule | None = None,
                  calibration: Mapping[str, Any] | None = None) -> str:
    """The HTML report of ``run`` (it must have a summary) with the gallery of ``sample``.

    ``rule``: preview this keep rule instead of the run's; ``calibration``: a calibration (a
    :func:`~hf_vlm_filter.engines.calibration.load_calibration` dict) to show, default the one the
    run's scorers declare.
    """
    if run.summary is None:
        raise ValueError("a report needs the run's summary (counts and histograms)")
    shown = rule if rule is not None else run.rule
    preview = rule is not None and rule != run.rule
    calibration = calibration if calibration is not None else find_calibration(run)
    verdicts = _verdicts(sample, shown, preview)
    parts = [f"<header><h1>hf_vlm_filter report: {escape(run.source)}</h1>",
             f"<p>{escape(shown.describe())} &middot; hf_vlm_filter {escape(run.library_version)}</p></header>"]
    if preview:
        parts.append(f'<p class="preview" data-preview="1">Previewing <strong>{escape(shown.describe())}</strong>; '
                     f'the run kept by {escape(run.rule.describe())}. Counts below are the run&#x27;s; the sampled '
                     "rows are decided again under the previewed rule.</p>")
    parts += [_run_section(run), _counts_section(run, sample, shown, preview), _histograms_section(run, shown, sample)]
    if sample is not None and len(sample.specs) > 1:
        parts.append(_agreement_section(sample, shown))
    if calibration:
        parts.append(_calibration_section(calibration))
    if sample is not None:
        parts.append(_gallery_section(run, sample, shown, verdicts, preview))
    return page(f"hf_vlm_filter report: {run.source}", "\n".join(parts))


# ---- the run --------------------------------------------------------------------------------------
def _run_section(run: FilterRun) -> str:
    source = escape(run.source) + (f" (revision <code>{escape(run.source_revision)}</code>)" if run.source_revision else "")
    facts = [("source", source), ("split", escape(run.split)),
             ("rows read at most", escape(str(run.limit)) if run.limit is not None else "all"),
             ("keep rule", escape(run.rule.describe())), ("library version", escape(run.library_version))]
    if run.rule.resolved_from is not None:
        facts.append(("asked for", escape(run.rule.resolved_from.describe())))
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    if run.command or run.recipe:
        rows += f"<tr><th>reproduce</th><td><pre>{escape(run.command or run.recipe or '')}</pre></td></tr>"
    specs = {spec.column: spec for spec in run.summary.specs}
    scorers = []
    for info in run.scorers:
        spec = specs.get(info.score_column)
        other = "".join(f"<tr><th>{escape(str(key))}</th><td><pre>{escape(_text(value))}</pre></td></tr>"
                        for key, value in info.facts.items())
        details = f"<details><summary>facts</summary><table class=facts>{other}</table></details>" if other else ""
        scorers.append(
            f"<tr><td>{escape(info.name)}</td><td><code>{escape(str(info.model))}</code></td>"
            f"<td>{escape(info.revision or 'default branch')}</td><td>{escape(info.mode or '-')}</td>"
            f"<td><code>{escape(info.score_column)}</code></td>"
            f"<td>{escape(spec.describe_range() if spec else info.direction + ' is better')}</td>"
            f"<td>{details}</td></tr>")
    return ('<section id="run"><h2>The run</h2>'
            f'<table class="facts">{rows}</table>'
            '<table class="facts scorers"><tr><th>scorer</th><th>checkpoint</th><th>revision</th><th>mode</th>'
            f'<th>score column</th><th>range</th><th></th></tr>{"".join(scorers)}</table></section>')


def _counts_section(run: FilterRun, sample: GallerySample | None, shown: KeepRule, preview: bool) -> str:
    summary = run.summary
    rows = [("rows", "read", summary.rows, ""), ("scored", "scored", summary.scored, ""),
            ("errors", "could not be scored", summary.rows - summary.scored, ""),
            ("kept", "kept", summary.kept, f"{summary.kept_fraction:.1%}; {run.rule.describe()}")]
    body = "".join(f'<tr><th>{escape(name)}</th><td data-count="{key}">{value}</td><td>{escape(note)}</td></tr>'
                   for key, name, value, note in rows)
    if preview and sample is not None:
        estimate = estimate_kept(sample, shown, summary.rows)
        body += (f'<tr><th>kept by the previewed rule</th><td data-count="preview-kept">{estimate.kept}</td>'
                 f"<td>{escape(estimate.describe())}</td></tr>")
    if summary.elapsed_seconds > 0:
        body += (f'<tr><th>elapsed</th><td data-count="elapsed">{summary.elapsed_seconds:.1f} s</td>'
                 f"<td>{summary.rows_per_second:.1f} rows/s</td></tr>")
    parts = [f'<section id="counts"><h2>Counts</h2><table class="counts">{body}</table>']
    if summary.errors:
        parts.append("<h4>Rows not scored, by reason</h4><table class=\"counts errors\">" + "".join(
            f'<tr><th>{escape(reason)}</th><td data-error="{escape(reason)}">{count}</td></tr>'
            for reason, count in summary.errors.items()) + "</table>")
    dropped = sorted(summary.dropped_by.items(), key=lambda item: (-item[1], item[0]))
    if dropped:
        parts.append("<h4>Rows dropped, by rule</h4><table class=\"counts dropped-by\">" + "".join(
            f'<tr><th>{escape(reason)}</th><td data-dropped="{escape(reason)}">{count}</td></tr>'
            for reason, count in dropped) + "</table>")
    parts.append("</section>")
    return "".join(parts)


def _histograms_section(run: FilterRun, shown: KeepRule, sample: GallerySample | None) -> str:
    thresholds = shown.thresholds
    figures = []
    for index, spec in enumerate(run.summary.specs):
        histogram = run.summary.histograms[spec.column]
        bins = histogram.bins(DISPLAY_BINS)
        links = [_bin_id(index, i) for i in range(len(bins))] if sample is not None else None
        svg = histogram_svg(spec.column, bins, threshold=thresholds.get(spec.column), higher=spec.higher_is_better,
                            links=links)
        observed = (f"observed {label(histogram.minimum)} to {label(histogram.maximum)}" if histogram.count
                    else "no scored rows")
        figures.append(f'<figure class="chart" data-column="{escape(spec.column)}">{svg}<figcaption>'
                       f"{escape(spec.column)}: {histogram.count} scored rows; {escape(spec.describe_range())}; "
                       f"{escape(observed)}. Green bins pass the threshold, grey fail, gold straddle it; "
                       "a bar opens its rows in the gallery.</figcaption></figure>")
    return f'<section id="histograms"><h2>Score histograms</h2><div class="charts">{"".join(figures)}</div></section>'


def _agreement_section(sample: GallerySample, shown: KeepRule) -> str:
    from ..engines.calibration import spearman

    table = sample.score_table()
    columns = sample.columns
    header = "".join(f"<th><code>{escape(column)}</code></th>" for column in columns)
    rows = []
    for a in columns:
        cells = []
        for b in columns:
            both = [i for i in range(len(table[a])) if math.isfinite(table[a][i]) and math.isfinite(table[b][i])]
            rho = spearman(table[a][both], table[b][both]) if len(both) > 1 else None
            text = "n/a" if rho is None else f"{rho:.3f}"
            cells.append(f'<td class="number" data-spearman="{escape(a)}|{escape(b)}" data-n="{len(both)}">{text}</td>')
        rows.append(f"<tr><th><code>{escape(a)}</code></th>{''.join(cells)}</tr>")
    first, second = columns[0], columns[1]
    kept = [not verdict for verdict in shown.decide(table)] if shown.is_filter else [True] * len(table[first])
    scatter = scatter_svg(table[first], table[second], kept, x_label=first, y_label=second,
                          x_threshold=shown.thresholds.get(first), y_threshold=shown.thresholds.get(second))
    sampled = len(table[first])
    return ('<section id="agreement"><h2>Agreement between scorers</h2>'
            f"<p>Spearman's rank correlation over the rows both scored, in a uniform sample of {sampled} rows.</p>"
            f'<table class="matrix"><tr><th></th>{header}</tr>{"".join(rows)}</table>'
            f'<figure class="chart">{scatter}<figcaption>{escape(first)} against {escape(second)} '
            "(green: kept)</figcaption></figure></section>")


def _calibration_section(calibration: Mapping[str, Any]) -> str:
    from ..engines.calibration import calibration_facts

    try:
        facts = calibration_facts(dict(calibration))
    except (KeyError, TypeError, ValueError, AttributeError):  # not a calibration.json: its plain fields
        facts = {key: value for key, value in calibration.items() if isinstance(value, (str, int, float))}
    rows = "".join(f"<tr><th>{escape(str(key))}</th><td>{escape(_text(value))}</td></tr>"
                   for key, value in facts.items() if value is not None)
    against = calibration.get("against") if calibration.get("against") in ("reference", "justify") else "reference"
    parts = [f'<section id="calibration"><h2>Calibration: fast against {against}</h2>',
             f'<table class="facts">{rows}</table>']
    disagreements = [row for row in calibration.get("disagreements") or [] if isinstance(row, Mapping)]
    if disagreements:
        parts.append("<h4>Most disagreeing rows</h4><table class=\"facts\"><tr><th>caption</th><th>image</th>"
                     "<th>fast</th><th>reference</th><th>justification</th></tr>")
        for row in disagreements[:CALIBRATION_ROWS]:
            parts.append(f'<tr><td dir="auto">{escape(_text(row.get("caption")))}</td>'
                         f'<td dir="auto">{escape(_text(row.get("image")))}</td>'
                         f'<td class="number">{escape(_number(row.get("fast_score")))}</td>'
                         f'<td class="number">{escape(_number(row.get("reference_score")))}</td>'
                         f'<td dir="auto">{escape(_text(row.get("justification")))}</td></tr>')
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


# ---- the gallery ----------------------------------------------------------------------------------
def _gallery_section(run: FilterRun, sample: GallerySample, shown: KeepRule, verdicts: Mapping[int, str],
                     preview: bool) -> str:
    summary = run.summary
    options = "".join(f'<option value="{escape(column)}">{escape(column)}</option>' for column in sample.columns)
    parts = ['<section id="gallery"><h2>Gallery</h2>',
             f"<p>A seeded sample of at most {sample.per_section} rows per section, collected during the run "
             "(seed " + escape(str(sample.seed)) + ").</p>",
             '<div class="controls"><label>score column <select id="gallery-column">' + options + "</select></label>"
             '<label><input type="checkbox" data-hide="kept" checked> kept</label>'
             '<label><input type="checkbox" data-hide="dropped" checked> dropped</label>'
             '<label><input type="checkbox" data-hide="unscored" checked> not scored</label>'
             '<label>caption contains <input type="search" id="caption-filter"></label></div>']
    thresholds = shown.thresholds
    order = [spec.column for spec in summary.specs]
    for spec in sample.specs:
        column = spec.column
        index = order.index(column) if column in order else len(order)
        parts.append(f'<div class="gallery-column" data-column="{escape(column)}"><h3>By <code>{escape(column)}</code></h3>')
        histogram = summary.histograms.get(column)
        bins = histogram.bins(DISPLAY_BINS) if histogram is not None else []
        by_bin: list[list[SampleRow]] = [[] for _ in bins]
        for row in sample.column_rows(column):
            where = _bin_of(row.score(column), bins)
            if where is not None:
                by_bin[where].append(row)
        listed = list(enumerate(zip(bins, by_bin)))
        for i, ((low, high, count), rows) in reversed(listed) if spec.higher_is_better else listed:
            shown_rows = rows[: sample.per_section]
            parts.append(f'<section class="bin" id="{_bin_id(index, i)}" data-column="{escape(column)}" data-bin="{i}">'
                         f"<h4>{escape(column)} {escape(label(low))} to {escape(label(high))}: {count} rows"
                         f"{f', showing {len(shown_rows)}' if count else ''}</h4>"
                         f"{_cards(shown_rows, sample, verdicts) if count or shown_rows else ''}</section>")
        threshold = thresholds.get(column)
        if threshold is not None:
            exact = not preview and sample.thresholds.get(column) == threshold
            for passing in (True, False):
                rows = sample.nearest_rows(column, passing) if exact else _nearest(sample, column, threshold, spec,
                                                                                    passing)
                side = "passing" if passing else "failing"
                where = "" if exact else " (from the sampled rows: the run was not sampled at this threshold)"
                parts.append(f'<section class="nearest" data-column="{escape(column)}" data-side="{side}">'
                             f"<h4>Nearest the threshold {escape(label(threshold))}, {side} it{where}</h4>"
                             f"{_cards(rows, sample, verdicts)}</section>")
        parts.append("</div>")
    errors = sample.error_rows()
    if errors:
        parts.append('<div class="errors"><h3>Rows not scored</h3>')
        for kind, rows in errors.items():
            count = summary.errors.get(kind)
            total = f": {count} rows" if count is not None else ""
            parts.append(f'<section class="error-kind" data-kind="{escape(kind)}"><h4>{escape(kind)}{total}, '
                         f"showing {len(rows)}</h4>{_cards(rows, sample, verdicts)}</section>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _cards(rows: Sequence[SampleRow], sample: GallerySample, verdicts: Mapping[int, str]) -> str:
    if not rows:
        return '<p class="empty-note">no sampled row</p>'
    return '<div class="cards">' + "".join(_card(row, sample, verdicts.get(row.key, row.verdict)) for row in rows) + "</div>"


def _card(row: SampleRow, sample: GallerySample, verdict: str) -> str:
    unscored = any(value is None for value in row.scores.values())
    state = ("kept" if not verdict else "dropped") + (" unscored" if unscored else "")
    if row.thumbnail:
        width, height = jpeg_size(row.thumbnail)
        data = base64.b64encode(row.thumbnail).decode("ascii")
        picture = (f'<img src="data:image/jpeg;base64,{data}" width="{width}" height="{height}" '
                   f'alt="{escape(row.image or "image")}">')
    else:
        picture = f'<div class="no-image">no thumbnail: {escape(row.note or "no image")}</div>'
    caption = (f'<p class="caption" dir="auto">{escape(row.caption)}</p>' if row.caption is not None
               else '<p class="caption missing">no caption</p>')
    scores = "".join(f"<tr><th>{escape(column)}</th><td>{escape(_number(row.scores.get(column)))}</td></tr>"
                     for column in sample.columns)
    if not verdict:
        words = "kept"
    elif verdict == "error":
        words = f"dropped: not scored ({row.reason or 'no score'})"
    else:
        words = f"dropped: {verdict}"
    if verdict != "error" and row.reason:
        words += f" ({row.reason})"
    name = f'<p class="image-name" dir="auto">{escape(row.image)}</p>' if row.image else ""
    return (f'<figure class="row {state}" data-key="{row.key}" data-verdict="{escape(verdict)}">{picture}<figcaption>'
            f'{caption}<table class="scores">{scores}</table><p class="verdict">{escape(words)}</p>{name}'
            "</figcaption></figure>")


def _verdicts(sample: GallerySample | None, rule: KeepRule, preview: bool) -> dict[int, str]:
    """Each sampled row's verdict under ``rule`` (the saved one unless previewing)."""
    if sample is None:
        return {}
    rows = sample.all_rows()
    if not preview or not rows:
        return {row.key: row.verdict for row in rows}
    columns = {column: [row.score(column) for row in rows] for column in sample.columns}
    return dict(zip((row.key for row in rows), rule.decide(columns)))


def _nearest(sample: GallerySample, column: str, threshold: float, spec: Any, passing: bool) -> list[SampleRow]:
    """The sampled rows nearest ``threshold`` on one side (for a threshold the run did not sample at)."""
    rows = []
    for row in sample.all_rows():
        score = row.score(column)
        if math.isnan(score):
            continue
        passes = score >= threshold if spec.higher_is_better else score <= threshold
        if passes == passing:
            rows.append((abs(score - threshold), row.key, row))
    return [row for _, _, row in sorted(rows, key=lambda item: item[:2])[: sample.per_section]]


def _bin_of(value: float, bins: Sequence[tuple[float, float, int]]) -> int | None:
    """The index of the displayed bin holding ``value`` (as the summary's histogram counts it)."""
    if math.isnan(value) or not bins:
        return None
    for index, (_, high, _) in enumerate(bins):
        if value < high:
            return index
    return len(bins) - 1


def _bin_id(column_index: int, bin_index: int) -> str:
    return f"g{column_index}-b{bin_index}"


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
