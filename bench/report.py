"""Combines several benchmark runs into one table each, to show how much runs differ.

    .venv/bin/python bench/report.py bench/results/overhead-A.json bench/results/overhead-B.json …
    .venv/bin/python bench/report.py            # every overhead-*/generation-*/streaming-* result in bench/results

Overhead: per target, the median over every round of every run, and the range (min–max) of
the per-run medians. Generation: tokens/s and ratio per run, and their range. Streaming: TTFT,
added TTFT, gap and tokens/s ratio per run (median of the runs, and their range).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, markdown_table  # noqa: E402


def load(paths: list[Path]) -> tuple[list[dict], list[dict], list[dict]]:
    overhead, generation, streaming = [], [], []
    for path in paths:
        data = json.loads(path.read_text())
        data["_path"] = path.name
        if data.get("benchmark") == "overhead":
            overhead.append(data)
        elif data.get("benchmark") == "generation":
            generation.append(data)
        elif data.get("benchmark") == "streaming":
            streaming.append(data)
    return overhead, generation, streaming


def _rng(values, digits, signed=False):
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    lo, hi = min(values), max(values)
    return f.format(lo) if len(values) == 1 or f.format(lo) == f.format(hi) else f"{f.format(lo)} … {f.format(hi)}"


def overhead_table(runs: list[dict]) -> str:
    names = list(runs[0]["summary"])
    rows = []
    for name in names:
        per_run = [r["summary"][name] for r in runs if name in r["summary"]]
        allv = lambda key: [v for s in per_run for v in s[key]]  # noqa: E731
        med = lambda key: statistics.median(allv(key))  # noqa: E731
        runmed = lambda key: [statistics.median(s[key]) for s in per_run]  # noqa: E731
        direct = name == "direct"
        rows.append([
            name,
            f"{med('p50_ms'):.2f} ({_rng(runmed('p50_ms'), 2)})",
            f"{med('p99_ms'):.2f} ({_rng(runmed('p99_ms'), 2)})",
            "—" if direct else f"{med('added_p50_ms'):+.2f} ({_rng(runmed('added_p50_ms'), 2, True)})",
            "—" if direct else f"{med('added_p99_ms'):+.2f} ({_rng(runmed('added_p99_ms'), 2, True)})",
            f"{med('rps'):.0f} ({_rng(runmed('rps'), 0)})",
            "1.00" if direct else f"{med('rps_ratio'):.2f} ({_rng(runmed('rps_ratio'), 2)})",
            "—" if direct else f"{statistics.median([v for v in allv('server_cpu_ms_per_request_conc') if v is not None]):.2f}",
            f"{max(s['foreign_cores_max'] for s in per_run):.2f}",
            sum(s["errors"] for s in per_run),
        ])
    n_rounds = sum(len(r["summary"]["direct"]["p50_ms"]) for r in runs)
    head = (f"{len(runs)} run(s), {n_rounds} rounds in all; value = median of all rounds "
            f"(range of the per-run medians)\n\n")
    return head + markdown_table(
        ["target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "req/s @64", "× direct",
         "proxy CPU ms/req @64", "other load, cores (max)", "errors"], rows)


def generation_table(runs: list[dict]) -> str:
    names = list(runs[0]["summary"])
    rows = []
    for name in names:
        tps = [r["summary"][name]["tokens_per_s"] for r in runs]
        ratio = [r["summary"][name]["ratio_vs_llama_server"] for r in runs]
        passes = [v for r in runs for v in r["summary"][name]["tokens_per_s_per_pass"]]
        same = [r["same_text_share"].get(name) for r in runs if name in r["same_text_share"]]
        rows.append([name, f"{statistics.median(tps):.1f} ({_rng(tps, 1)})",
                     f"{_rng(passes, 1)}",
                     "1.000" if name == "llama-server" else f"{statistics.median(ratio):.3f} ({_rng(ratio, 3)})",
                     "—" if not same else f"{min(same):.0%}",
                     f"{max(r['summary'][name]['foreign_cores_max'] for r in runs):.2f}"])
    head = f"{len(runs)} run(s); value = median of the runs (range of the runs)\n\n"
    return head + markdown_table(["target", "tokens/s", "tokens/s per pass (all runs)", "× llama-server",
                                  "same text as llama-server", "other load, cores (max)"], rows)


def streaming_table(runs: list[dict], model: str) -> str:
    runs = [r for r in runs if r["summary"].get(model)]
    rows = []
    for name in runs[0]["summary"][model]:
        per_run = [r["summary"][model][name] for r in runs if name in r["summary"][model]]

        def cell(get, digits, signed=False):
            values = [v for v in map(get, per_run) if v is not None]
            if not values:
                return "—"
            return f"{statistics.median(values):{'+' if signed else ''}.{digits}f} ({_rng(values, digits, signed)})"

        rows.append([name, cell(lambda s: s["ttft_ms"]["p50"], 2), cell(lambda s: s["ttft_ms"]["p99"], 2),
                     cell(lambda s: s.get("added_ttft_ms_p50"), 2, True),
                     cell(lambda s: s.get("added_ttft_ms_paired_median"), 2, True),
                     cell(lambda s: s["gap_ms"]["p50"] if s["gap_ms"] else None, 2),
                     cell(lambda s: s["gap_ms"]["p99"] if s["gap_ms"] else None, 2),
                     cell(lambda s: s["tokens_per_s"], 1), cell(lambda s: s.get("tokens_per_s_vs_llama_server"), 3)])
    head = f"{len(runs)} run(s), model {model}; value = median of the runs (range of the runs)\n\n"
    return head + markdown_table(["target", "TTFT p50 ms", "TTFT p99 ms", "added TTFT p50 ms", "paired", "gap p50 ms",
                                  "gap p99 ms", "tokens/s", "× llama-server"], rows)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(
        p for p in RESULTS_DIR.glob("*.json") if not p.name.endswith("-latest.json"))
    overhead, generation, streaming = load(paths)
    if overhead:
        print("## Gateway overhead\n")
        print("runs: " + ", ".join(r["_path"] for r in overhead) + "\n")
        print(overhead_table(overhead) + "\n")
    if generation:
        print("## Generation throughput\n")
        print("runs: " + ", ".join(r["_path"] for r in generation) + "\n")
        print(generation_table(generation) + "\n")
    if streaming:
        print("## Streaming\n")
        print("runs: " + ", ".join(r["_path"] for r in streaming) + "\n")
        for model in ("smollm2", "smollm2_cached", "echo"):
            if any(r["summary"].get(model) for r in streaming):
                print(streaming_table(streaming, model) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
