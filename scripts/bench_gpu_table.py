"""scripts/bench-gpu's summary: each series' levels beside the commercial system's published H100 table.

    bench_gpu_table.py RESULTS_DIR SERIES...

Reads RESULTS_DIR/<series>-c<N>.json (`chorus bench --json`, one level each) and prints markdown: per series, a
row per concurrency with TTFA p50 / p95, RTF p50, characters per second, the gap-free rate and underruns, beside the
reference's TTFA where it publishes one; then whether the first series meets the goal of issue 19 (at or below
every published TTFA figure with every stream gap-free, above the published characters per second at 16 streams).
"""
import json
import math
import re
import sys
from pathlib import Path

# The reference: the system Chorus reproduces, its current model on one H100 (issue 19): streams -> (p50, p95) ms.
REFERENCE_TTFA = {1: (50, 55), 4: (80, 115), 8: (120, 165), 12: (125, 225), 16: (195, 300)}
REFERENCE_CHARS_AT_16 = 795


def num(v) -> float:
    return float("nan") if v is None else float(v)


def levels(out: Path, series: str) -> list:
    found = []
    for path in out.glob(f"{series}-c*.json"):
        if not re.fullmatch(rf"{re.escape(series)}-c\d+\.json", path.name):
            continue
        found.extend(json.loads(path.read_text()))
    return sorted(found, key=lambda level: level["concurrency"])


def gap_free(level) -> str:
    rate = num(level.get("gap_free_rate"))
    if math.isnan(rate):
        return "-"
    return "100%" if rate >= 1.0 else f"{rate * 100:.1f}%"


def table(name: str, rows: list) -> list:
    label = rows[0].get("label", name) if rows else name
    lines = [
        f"### {label} (`{name}`)",
        "",
        "| streams | requests | errors | TTFA p50 / p95 (ms) | reference p50 / p95 (ms) | at or below | RTF p50 | "
        "chars/s | audio s/s | gap-free | underruns (streams) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in rows:
        c = level["concurrency"]
        p50, p95 = num(level["ttfa_p50_ms"]), num(level["ttfa_p95_ms"])
        ref = REFERENCE_TTFA.get(c)
        verdict = "-" if ref is None else ("yes" if p50 <= ref[0] and p95 <= ref[1] else "**no**")
        ref_cell = "-" if ref is None else f"{ref[0]} / {ref[1]}"
        chars = f"{level['chars_per_s']:.0f}" + (f" (ref. {REFERENCE_CHARS_AT_16})" if c == 16 else "")
        lines.append(
            f"| {c} | {level['requests']} | {level['errors']} | {p50:.1f} / {p95:.1f} | {ref_cell} | {verdict} | "
            f"{num(level['rtf_p50']):.3f} | {chars} | {level['audio_s_per_s']:.1f} | {gap_free(level)} | "
            f"{level['underruns']} ({level.get('underrun_streams', 0)}) |"
        )
    return lines + [""]


def verdict(rows: list) -> list:
    over = []
    for level in rows:
        ref = REFERENCE_TTFA.get(level["concurrency"])
        if ref and not (num(level["ttfa_p50_ms"]) <= ref[0] and num(level["ttfa_p95_ms"]) <= ref[1]):
            over.append(str(level["concurrency"]))
    gaps = [str(l["concurrency"]) for l in rows if l["errors"] or num(l.get("gap_free_rate")) < 1.0]
    at16 = next((l for l in rows if l["concurrency"] == 16), None)
    missing = sorted(set(REFERENCE_TTFA) - {l["concurrency"] for l in rows})
    lines = [
        "TTFA at or below the reference at every level it publishes: "
        + ("yes" if not over and not missing else f"no (above at {', '.join(over) or '-'}; not run: {missing or '-'})"),
        "every stream gap-free and no error at every level: " + ("yes" if not gaps else f"no (at {', '.join(gaps)})"),
    ]
    if at16:
        chars = at16["chars_per_s"]
        lines.append(
            f"characters per second at 16 streams: {chars:.0f} against {REFERENCE_CHARS_AT_16}: "
            + ("above" if chars > REFERENCE_CHARS_AT_16 else "**not above**")
        )
    return lines


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: bench_gpu_table.py RESULTS_DIR SERIES...")
    out, series = Path(sys.argv[1]), sys.argv[2:]
    env = out / "env.txt"
    lines = ["## Chorus beside the published H100 table", ""]
    if env.is_file():
        lines += ["```", env.read_text().strip(), "```", ""]
    for name in series:
        rows = levels(out, name)
        if not rows:
            lines += [f"### `{name}`: no results", ""]
            continue
        lines += table(name, rows)
    first = levels(out, series[0])
    if first:
        lines += [f"Goal of issue 19, series `{series[0]}`:", ""] + [f"- {v}" for v in verdict(first)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
