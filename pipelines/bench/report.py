"""The results: a Markdown table on stdout, and JSON and Markdown files in bench-results/ (git-ignored)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

from pipelines.bench.common import Figure
from pipelines.platform.jars import PROJECT_DIR

L1_TARGETS_MS = {"bronze": 2000, "silver": None, "gold": 5000}


def machine() -> dict:
    from importlib.metadata import version

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    mem_kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
    return {
        "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024**2, 1), "java": java,
        "python": platform.python_version(),
        **{name: version(name) for name in ("pyspark", "delta-spark", "confluent-kafka", "great-expectations", "pandas")},
        "delta_jvm": sorted(p.name for p in (PROJECT_DIR / ".jars" / "spark").glob("delta-spark_*.jar")),
        "kafka_broker": sorted(p.name for p in (PROJECT_DIR / ".jars" / "kafka").glob("kafka_2.13-*.jar")),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def _main_table(figures: list[Figure]) -> list[str]:
    lines = ["| figure | what | ours | baseline | ratio | target | peak RSS (driver) | took |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for f in figures:
        rss = f"{f.peak_rss_mb:,.0f} MB" if f.peak_rss_mb else "-"
        target = "-" if f.target is None else (f"<= {f.target}" if f.lower_is_better else f">= {f.target}")
        digits = 1 if f.unit == "s" else 3 if max(abs(f.ours), abs(f.baseline)) < 10 else 0
        lines.append(f"| {f.name} | {f.what} | {f.ours:,.{digits}f} {f.unit} | {f.baseline:,.{digits}f} {f.unit} | "
                     f"{f.ratio:.2f} | {target} | {rss} | {f.seconds:.0f} s |")  # fmt: skip
    return lines


def _latency_table(f: Figure) -> list[str]:
    ours, minimal = f.details["ours"], f.details["minimal"]
    layers = [layer for layer in ("bronze", "silver", "gold") if layer in ours]
    lines = ["", f"{f.name} latency, ms from send to readable, at {ours['rate']:,} records/s (minimal job: "
             f"{minimal['rate']:,}); caught up: ours {ours['caught_up']}, minimal {minimal['caught_up']}:", "",
             "| readable in | p50 | p95 | p99 | p99 target | records |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = [(f"ours: {layer}", ours[layer], L1_TARGETS_MS[layer]) for layer in layers]
    for name, s, target in [*rows, ("minimal job (its table)", minimal["bronze"], None)]:
        t = f"<= {target}" if target else "-"
        lines.append(f"| {name} | {s['p50']:,.0f} | {s['p95']:,.0f} | {s['p99']:,.0f} | {t} | {s['records']:,} |")
    lines += ["", "Median ms per micro-batch with input (batches, rows per batch, then Spark's phases):", ""]
    for name, p in {**ours["profile"], **{f"minimal: {k}": v for k, v in minimal["profile"].items()}}.items():
        phases = ", ".join(f"{k} {v:,.0f}" for k, v in p.items() if k not in ("batches", "rows_per_batch") and v >= 50)
        lines.append(f"- {name}: {p['batches']} batches of {p['rows_per_batch']:,} rows; {phases}")
    return lines


def _growth_table(f: Figure) -> list[str]:
    sizes = f.details["sizes"]
    stages = [k for k in sizes[-1] if k.endswith("_us")]  # the last row has every column (marginal from the 2nd)
    lines = ["", f"{f.name}: microseconds per record by backlog size (marginal: per extra record over the size "
             "before):", "",
             "| records | " + " | ".join(k.removesuffix("_us") for k in stages) + " |",
             "|---:|" + "---:|" * len(stages)]  # fmt: skip
    lines += [f"| {r['records']:,} | " + " | ".join(str(r.get(k, "-")) for k in stages) + " |" for r in sizes]
    return lines


def _files_table(files: list[dict]) -> list[str]:
    lines = ["", "Files per table after L1e's continuous run, before and after compaction (`lakepipe optimize`):", "",
             "| table | files | after OPTIMIZE | size |", "|---|---:|---:|---:|"]  # fmt: skip
    return lines + [f"| {c['table']} | {c['files_before']:,} | {c['files_after']:,} | {c['bytes_after'] / 1e6:,.1f} MB |"
                    for c in files]  # fmt: skip


def report(figures: list[Figure], info: dict, command: str, out_dir: Path, repeats: int, failed: dict[str, str] | None = None) -> str:
    lines = [f"Benchmarks (`{command}`), {info['cores']} cores, {info['memory_gb']} GB, {info['java']}, "
             f"PySpark {info['pyspark']}; " + (f"medians of {repeats} after a warm-up." if repeats > 1 else
             "one run per side, no warm-up (a smoke run, not figures to quote)."), "", *_main_table(figures)]  # fmt: skip
    for f in figures:
        if f.name.startswith("L1"):
            lines += _latency_table(f)
        if f.name.startswith("S1"):
            lines += _growth_table(f)
        if f.details.get("alone_records_per_s"):
            lines += ["", f"{f.name}: each gold query alone, records/s: "
                      + ", ".join(f"{k} {v:,}" for k, v in f.details["alone_records_per_s"].items())]
        if f.details.get("trials"):
            lines += ["", f"{f.name} trials (rate sent, sustained; per stage: growth of the backlog's troughs in records "
                      "over the window / the growth allowed, then the least-squares slope of its samples in records/s):", ""]
            lines += [_trial_line(t) for t in f.details["trials"]]
        if f.details.get("files"):
            lines += _files_table(f.details["files"])
        if f.name == "E1c":
            lines += ["", "E1c, the measured window's CPU seconds (driver JVM by thread; Python workers; the bench's Python):", ""]
            lines += [_cpu_line(side, f.details[side]) for side in ("ours", "baseline")]
    lines += ["", *[f"Not measured: {name} ({reason})" for name, reason in (failed or {}).items()]] if failed else []
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = info["when"].replace(":", "")
    (out_dir / f"bench-{stamp}.md").write_text(text + "\n")
    data = {"machine": info, "command": command, "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
            "not_measured": failed or {}}
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2, default=str))
    return text


def _cpu_line(side: str, m: dict) -> str:
    threads = ", ".join(f"{k} {v:,}" for k, v in m.get("jvm_cpu_s_by_thread", {}).items())
    workers = f"; Python workers {m['python_workers_cpu_s']:,}" if "python_workers_cpu_s" in m else ""
    return f"- {side}: {m['records']:,} records, JVM {m['jvm_cpu_s']:,} ({threads}){workers}; bench Python {m['python_cpu_s']:,}"


def _trial_line(t: dict) -> str:
    growth, allowed = t.get("trough_growth", {}), t.get("allowed_growth", {})
    slopes = t["slopes"]
    stages = ", ".join(f"{k} {growth.get(k, 0):+,}" + (f" / {allowed[k]:,}" if k in allowed else "")
                       + (f" ({slopes[k]:+,.0f}/s)" if k in slopes else "") for k in growth or slopes)  # fmt: skip
    old = "" if "sampled_sustained" not in t else f"; by 2 s samples (before session 24): {'sustained' if t['sampled_sustained'] else 'not'}"
    jit = f"; JIT compile {t['jit_s']} s" if "jit_s" in t else ""
    return f"- {t['rate']:,}/s: {'sustained' if t['sustained'] else 'NOT sustained'}; {stages}{old}{jit}"
