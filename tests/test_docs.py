"""The examples in the package's docstrings run and print what they show (examples that need a
Hub checkpoint or a GPU are marked ``+SKIP`` where they are written)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hf_vlm_filter

MODULES = sorted(info.name for info in pkgutil.walk_packages(hf_vlm_filter.__path__, "hf_vlm_filter.")
                 if not info.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write relative paths write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see output)"


def test_public_functions_and_scorers_carry_examples():
    import inspect

    def needs_example(value) -> bool:
        if inspect.isfunction(value):
            return True
        return inspect.isclass(value) and hasattr(value, "score_specs" if value.__name__ == "CompositeScorer"
                                                  else "config_class") and value is not hf_vlm_filter.Scorer

    undocumented = [name for name in hf_vlm_filter.__all__
                    if needs_example(getattr(hf_vlm_filter, name))
                    and ">>>" not in (getattr(hf_vlm_filter, name).__doc__ or "")]
    assert undocumented == [], f"public names without a runnable example: {undocumented}"


def test_readme_scorer_table_is_the_registry_s():
    from pathlib import Path

    from hf_vlm_filter.scorers.registry import docs_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- scorers:begin")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- scorers:end -->")].strip()
    assert table == docs_table()


def test_the_scorer_guide_quotes_a_real_scorer_module_whole():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    guide = (root / "docs" / "adding_a_scorer.md").read_text()
    module = (root / "hf_vlm_filter" / "scorers" / "caption_perplexity.py").read_text()
    assert "```python\n" + module + "```" in guide
