"""Helpers for the multi-rank tests: a source split into Parquet shards, and torchrun-style rank processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from ._hub_helpers import write_pairs

ROOT = Path(__file__).resolve().parents[1]


def write_pair_shards(folder: Path, count: int, shards: int, broken: dict[int, str] | None = None) -> Path:
    """``count`` pairs (ids 0..count-1, see ``write_pairs``) in ``shards`` Parquet files of ``folder``,
    contiguous slices of about equal size; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = pq.read_table(write_pairs(folder.parent / f".{folder.name}-all.parquet", count, broken))
    bounds = [round(i * count / shards) for i in range(shards + 1)]
    for index in range(shards):
        pq.write_table(whole.slice(bounds[index], bounds[index + 1] - bounds[index]),
                       folder / f"part-{index:02d}.parquet")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_ranks(argv: list[str], world_size: int, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run ``python -m hf_vlm_filter ARGV`` as ``world_size`` ranks at once, with the environment
    torchrun gives its workers (gloo over loopback); returns each rank's completed process."""
    port = str(free_port())
    children = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        children.append(subprocess.Popen([sys.executable, "-m", "hf_vlm_filter", *argv], cwd=ROOT, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for child in children:
            stdout, stderr = child.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results
