"""The dataset card's picture of the cut: a few kept and dropped thumbnails with their scores.

:func:`write_card_grid` picks, from a run's gallery sample, the kept rows and the dropped rows
nearest the threshold (a score run: the best and the worst scored), writes their thumbnails as
``assets/kept-NN.jpg`` / ``assets/dropped-NN.jpg`` and returns the Markdown that shows them: one
table per side, image, scores and caption per cell. Captions and reasons are made inert for
Markdown and HTML (every character that could start markup becomes a numeric character reference;
bidirectional override controls are dropped).

Example:
    >>> md_text("<b>*bold*</b> | [link](x)")
    '&#60;b&#62;&#42;bold&#42;&#60;/b&#62; &#124; &#91;link&#93;&#40;x&#41;'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..engines.run_record import FilterRun
from .gallery import GallerySample, SampleRow

ASSETS_DIR = "assets"
#: Thumbnails per side of the cut.
PER_SIDE = 6
CAPTION_CHARS = 90
_MARKUP = set("\\`*_{}[]()<>#+-!|~&\"'=:^$%")


#: Bidirectional embedding, override and isolate controls: a caption's own cannot reorder the card's text.
_BIDI_CONTROLS = {chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def md_text(text: str) -> str:
    """``text`` as literal Markdown text (no markup, no HTML, no bidi controls, one line)."""
    flat = " ".join("".join(char for char in str(text) if char not in _BIDI_CONTROLS).split())
    return "".join(f"&#{ord(char)};" if char in _MARKUP else char for char in flat)


@dataclass
class CardGrid:
    """The Markdown of the grid and its files (path in the repository -> local file)."""

    markdown: str
    files: dict[str, Path] = field(default_factory=dict)


def pick_rows(run: FilterRun, sample: GallerySample, per_side: int = PER_SIDE) -> tuple[
        tuple[str, list[SampleRow]], tuple[str, list[SampleRow]]]:
    """``((title, kept rows), (title, dropped rows))`` for the grid, rows with a thumbnail only."""
    rule = run.rule
    column = next((c for c in rule.thresholds if c in sample.nearest), None)
    pictured = [row for row in sample.all_rows() if row.thumbnail]
    if not rule.is_filter:
        spec = sample.specs[0]
        scored = [row for row in pictured if not math.isnan(row.score(spec.column))]
        scored.sort(key=lambda row: (-row.score(spec.column) if spec.higher_is_better else row.score(spec.column), row.key))
        return ((f"Best {spec.column} in the sample", scored[:per_side]),
                (f"Worst {spec.column} in the sample", scored[::-1][:per_side]))
    kept, dropped = [], []
    if column is not None:
        kept = [row for row in sample.nearest_rows(column, True) if row.thumbnail and not row.verdict]
        dropped = [row for row in sample.nearest_rows(column, False) if row.thumbnail and row.verdict]
    taken = {row.key for row in kept + dropped}
    kept += [row for row in pictured if not row.verdict and row.key not in taken]
    dropped += [row for row in pictured if row.verdict and row.key not in taken]
    where = f" nearest the threshold ({rule.criteria})" if column is not None else " (a sample)"
    return (f"Kept{where}", kept[:per_side]), (f"Dropped{where}", dropped[:per_side])


def write_card_grid(run: FilterRun, sample: GallerySample, folder: str | Path, per_side: int = PER_SIDE) -> CardGrid | None:
    """Write the grid's thumbnails under ``folder/assets/`` and return its Markdown (``None`` when
    the sample holds no thumbnail)."""
    folder = Path(folder)
    assets = folder / ASSETS_DIR
    sides = pick_rows(run, sample, per_side)
    if not any(rows for _, rows in sides):
        return None
    assets.mkdir(parents=True, exist_ok=True)
    for old in list(assets.glob("kept-*.jpg")) + list(assets.glob("dropped-*.jpg")):
        old.unlink()
    files: dict[str, Path] = {}
    blocks = []
    for (title, rows), prefix in zip(sides, ("kept", "dropped")):
        if not rows:
            continue
        images, scores, captions = [], [], []
        for index, row in enumerate(rows):
            name = f"{ASSETS_DIR}/{prefix}-{index:02d}.jpg"
            (folder / name).write_bytes(row.thumbnail)
            files[name] = folder / name
            values = ", ".join(f"{column} {_number(row.scores.get(column))}" for column in sample.columns)
            images.append(f"![{md_text(prefix + ': ' + values)}]({name})")
            scores.append(md_text(values) + (f"<br>{md_text(row.verdict)}" if row.verdict else ""))
            caption = row.caption or ""
            captions.append(md_text(caption[:CAPTION_CHARS] + ("\u2026" if len(caption) > CAPTION_CHARS else "")))
        table = ["| " + " | ".join(images) + " |", "|" + "|".join([":-:"] * len(rows)) + "|",
                 "| " + " | ".join(scores) + " |", "| " + " | ".join(captions) + " |"]
        blocks.append(f"**{md_text(title)}**\n\n" + "\n".join(table))
    return CardGrid("\n\n".join(blocks), files)


def _number(value: float | None) -> str:
    return "NaN" if value is None or math.isnan(value) else f"{value:.3g}"
