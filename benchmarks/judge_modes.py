"""The judge's three modes side by side: tokens generated per row and pairs/s of fast, justify and
reference mode, with reference mode stopping at the score and generating on.

Two judges:

* **justifying** (default, CPU): the tiny Qwen2-VL fine-tuned to write a justification, its score
  and a remark after it (``hf_vlm_filter.testing.justifying_judge``, trained here in ~30 s), on its 32
  scene pairs. Reference mode generating on runs until the judge ends its turn.
* **forced** (``--forced-after N``): random weights (the tiny judge, or with ``--real-shape`` the
  Qwen2-VL-2B shape) whose generation is forced to write `` score: {7}`` after ``N`` free tokens and
  never to end its turn, so reference mode generating on runs to ``--max-new-tokens`` (512): a judge
  that keeps writing after its score. The GPU recipe of issue 16:

    python benchmarks/judge_modes.py                                   # CPU, justifying tiny judge
    python benchmarks/judge_modes.py --forced-after 32 --pairs 16      # CPU, random tiny judge
    python benchmarks/judge_modes.py --device cuda --real-shape --forced-after 64 --side 448 \\
        --micro-batch-sizes 32,64 --pairs 256                          # GPU, Qwen2-VL-2B shape

Token counts come from the judge's own ``generate_answers`` (per row: the answer it keeps; per
micro-batch: the decode steps run, which is what costs: transformers pads stopped rows until the
micro-batch's last row stops).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.models.score_readout import SCORE_PATTERN
from hf_vlm_filter.scorers.batching import available_cores


def throughput_module():
    """benchmarks/judge_throughput.py (its JPEG data and real-shape judge), imported by path."""
    path = Path(__file__).with_name("judge_throughput.py")
    spec = importlib.util.spec_from_file_location("_judge_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ForcedScoreAfter:
    """A logits processor: after ``after`` free tokens, force ``forced`` (e.g. `` score: {7}``) token by
    token, and never let the judge end its turn (``banned``)."""

    def __init__(self, after: int, forced: list[int], banned: list[int]) -> None:
        self.after, self.forced, self.banned = after, forced, banned
        self.prompt_width: int | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_width
        scores[:, self.banned] = -torch.inf
        if self.after <= step < self.after + len(self.forced):
            token = self.forced[step - self.after]
            forced = torch.full_like(scores, -torch.inf)
            forced[:, token] = 0.0
            return forced
        return scores


def force_score(judge: VLMJudge, after: int) -> None:
    """Make ``judge``'s (shared) model write `` score: {7}`` after ``after`` tokens, and never stop."""
    from transformers import LogitsProcessorList

    model, pre = judge.model(), judge.preprocessing
    forced = pre.tokenizer(" score: {7}", add_special_tokens=False)["input_ids"]
    banned = sorted(pre.end_ids | {pre.builder.pad_token_id})
    original = model.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        processor = ForcedScoreAfter(after, forced, banned)
        return original(*args, logits_processor=LogitsProcessorList([processor]), **kwargs)

    model.generate = generate


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_map(ds, judge: VLMJudge, batch_size: int, repeats: int) -> tuple[float, object]:
    """Best pairs/s of ``repeats`` runs (a shared machine's other load only ever slows a run down)."""
    ds.select(range(min(len(ds), judge.config.micro_batch_size or 8))).map(judge, batched=True,
                                                                           load_from_cache_file=False)  # warm-up
    best = 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = ds.map(judge, batched=True, batch_size=batch_size, load_from_cache_file=False)
        sync()
        best = max(best, len(ds) / (time.perf_counter() - start))
    return best, out


def token_counts(ds, judge: VLMJudge, micro: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Answer tokens per row and decode steps per micro-batch, stopping at the score and not."""
    batch = ds[:]
    rows = len(ds)
    kept_stop, kept_full, steps_stop, steps_full = [], [], [], []
    model = judge.model()
    for start in range(0, rows, micro):
        items = [judge.prepare(batch, index) for index in range(start, min(rows, start + micro))]
        inputs = judge.collate(items)
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        stopped, _, steps = judge.generate_answers(model, inputs, SCORE_PATTERN)
        full, _, steps_all = judge.generate_answers(model, inputs, None)
        kept_stop += [len(ids) for ids in stopped]
        kept_full += [len(ids) for ids in full]
        steps_stop.append(steps)
        steps_full.append(steps_all)
    return kept_stop, kept_full, steps_stop, steps_full


def report(ds, base: VLMJudge, micro: int, batch_size: int, label: str, repeats: int) -> None:
    reference = base.with_options(mode="reference", micro_batch_size=micro)
    stop, full, steps_stop, steps_full = token_counts(ds, reference, micro)
    print(f"  {label}, micro-batch {micro}: tokens generated per row: reference generating on {np.mean(full):.1f}, "
          f"stopping at the score {np.mean(stop):.1f} ({100 * (1 - np.sum(stop) / np.sum(full)):.0f}% fewer); "
          f"decode steps per micro-batch {np.mean(steps_full):.1f} vs {np.mean(steps_stop):.1f} "
          f"({100 * (1 - np.sum(steps_stop) / np.sum(steps_full)):.0f}% fewer)")
    rates = {}
    for name, judge in (("fast", base.with_options(mode="fast", micro_batch_size=micro)),
                        ("justify", base.with_options(mode="justify", micro_batch_size=micro)),
                        ("reference, stop at score", reference),
                        ("reference, generating on", reference.with_options(stop_at_score=False))):
        rates[name], out = timed_map(ds, judge, batch_size, repeats)
        scored = sum(1 for error in out["judge_error"] if not error)
        rates[name + " scored"] = scored
    print(f"  pairs/s (best of {repeats}): " + ", ".join(f"{name} {rates[name]:.1f} ({rates[name + ' scored']}/{len(ds)} scored)"
                                    for name in ("fast", "justify", "reference, stop at score",
                                                 "reference, generating on")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forced-after", type=int, default=None,
                        help="random weights, ` score: {7}` forced after N tokens, no end of turn")
    parser.add_argument("--real-shape", action="store_true", help="random weights of the Qwen2-VL-2B shape")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--side", type=int, default=448, help="pixel budget side for the forced judge")
    parser.add_argument("--micro-batch-sizes", default=None, help="comma-separated (default 8 on CPU, 32,64 on GPU)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per mode; the best is reported")
    args = parser.parse_args()
    micros = [int(m) for m in (args.micro_batch_sizes or ("8" if args.device == "cpu" else "32,64")).split(",")]
    print(f"{available_cores()} cores, device {args.device}")
    if args.forced_after is None:
        from hf_vlm_filter.testing.justifying_judge import justifying_judge

        started = time.perf_counter()
        trained = justifying_judge()
        print(f"justifying tiny judge trained in {time.perf_counter() - started:.1f} s; "
              f"{trained.rows.num_rows} scene pairs (56x56)")
        ds = trained.rows.select_columns(["image", "text"])
        if args.pairs:
            ds = ds.select(range(min(args.pairs, len(ds))))
        base = VLMJudge(trained.path, device=args.device, dtype=args.dtype, text_column="text",
                        max_new_tokens=args.max_new_tokens)
        for micro in micros:
            report(ds, base, micro, max(micros) * 2, "justifying judge", args.repeats)
        return
    bench = throughput_module()
    work = Path(tempfile.mkdtemp(prefix="judge-modes-"))
    pairs = args.pairs or (16 if args.device == "cpu" else 256)
    ds = bench.jpeg_dataset(work, pairs)
    model_dir = bench.save_judge(work / "judge", smoke=not args.real_shape)
    budget = {"min_pixels": min(args.side * args.side, 256 * 28 * 28), "max_pixels": args.side * args.side}
    base = VLMJudge(str(model_dir), device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens, **budget)
    force_score(base, args.forced_after)
    print(f"{'Qwen2-VL-2B-shape' if args.real_shape else 'tiny'} random judge, ` score: {{7}}` forced after "
          f"{args.forced_after} tokens, no end of turn; {pairs} JPEGs at {args.side}x{args.side}")
    for micro in micros:
        report(ds, base, micro, max(micros) * 2, "forced judge", args.repeats)


if __name__ == "__main__":
    main()
