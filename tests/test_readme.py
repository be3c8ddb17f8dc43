"""The README's Python blocks run as written, top to bottom, so the README cannot drift from the code.

The blocks run in one fresh process, one namespace (later blocks use what earlier ones defined), in a
folder that :func:`hf_vlm_filter.testing.readme.readme_world` fills with tiny stand-ins for every
checkpoint and file they name, against the loopback Hub server holding the Hub repositories they
name. A block preceded by ``<!-- readme: skip (reason) -->`` is not run (a GPU cluster, S3...).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_vlm_filter.testing.readme import readme_world

from ._hub_helpers import TOKEN, hub, hub_env  # noqa: F401 - hub is a fixture

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"(?:<!-- readme: skip \((?P<why>[^)]*)\) -->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason)`` of every Python block of the README."""
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group("code"), m.group("why")) for m in BLOCK.finditer(text)]


def test_every_skipped_block_says_why():
    skipped = [(line, why) for line, _, why in readme_blocks() if why is not None]
    assert all(why.strip() for _, why in skipped)
    assert len(skipped) <= 3, skipped  # the README is runnable, not a list of exceptions


@pytest.mark.slow
def test_the_readme_python_blocks_run_as_written(hub, tmp_path):
    from huggingface_hub import HfApi

    world = tmp_path / "world"
    world.mkdir()
    api = HfApi(token=TOKEN)
    for repo_type, repo_id, folder in readme_world(world, ROOT / "examples" / "sample" / "pairs.json"):
        api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type)
    script = ["import sys", "print('readme: start', flush=True)"]
    for line, code, why in readme_blocks():
        if why is None:
            script += [f"print('readme: block at line {line}', flush=True)", code]
    (world / "readme_blocks.py").write_text("\n".join(script) + "\nprint('readme: done')\n")
    env = {**hub_env(hub.url, tmp_path / "hf-home"), "PATH": __import__("os").environ["PATH"],
           "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "readme_blocks.py"], cwd=world, env=env, capture_output=True, text=True,
                          timeout=1500)
    last = [line for line in done.stdout.splitlines() if line.startswith("readme:")][-1:]
    assert done.returncode == 0 and last == ["readme: done"], f"{last}\n{done.stderr[-4000:]}"
