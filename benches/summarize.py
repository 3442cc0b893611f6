#!/usr/bin/env python3
"""Summarises criterion's estimates for benches/RESULTS.md.

    python3 benches/summarize.py [TARGET_DIR] [ID_PREFIX ...]

Reads TARGET_DIR/criterion/**/new/{benchmark,estimates}.json (TARGET_DIR: $CARGO_TARGET_DIR or
target) and prints, per benchmark, the median per iteration with its 95% confidence interval, the
median absolute deviation (the spread of the samples) and, for a throughput benchmark, elements
per second at the median; then the ratios of medians that RESULTS.md quotes, for the benchmarks
of the same run that are present. Only the standard library.
"""
import json
import os
import pathlib
import sys

RATIOS = [
    ("compile / warm verdict, 5,000 words", "moderation/compile/5000_words", "moderation/verdict_warm/5000_words/clean"),
    ("compile / warm verdict, 500 patterns", "moderation/compile/500_patterns", "moderation/verdict_warm/500_patterns/clean"),
    ("substring loop / automaton", "moderation_engine_5000_words/substring_loop/clean", "moderation_engine_5000_words/automaton/clean"),
    ("regex loop / automaton", "moderation_engine_5000_words/regex_loop/clean", "moderation_engine_5000_words/automaton/clean"),
    ("UserSig generation / REST URL with the cached UserSig", "usersig/generate", "usersig/rest_url_cached_sig"),
    ("ack through moto / in process", "router_ack/through_moto", "router_ack/in_process"),
    ("pump CPU: one call per token / ours", "pump_cpu_500_tokens_100_tok_s/one_call_per_token", "pump_cpu_500_tokens_100_tok_s/ours"),
]


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return "%.4g %s" % (ns / scale, unit)
    return "%.4g ns" % ns


def main():
    args = sys.argv[1:]
    target = pathlib.Path(args.pop(0) if args else os.environ.get("CARGO_TARGET_DIR", "target"))
    prefixes = args
    rows = {}
    for est in sorted((target / "criterion").glob("**/new/estimates.json")):
        meta = json.loads((est.parent / "benchmark.json").read_text())
        full_id = meta["full_id"]
        if prefixes and not any(full_id.startswith(p) for p in prefixes):
            continue
        e = json.loads(est.read_text())
        med = e["median"]
        rows[full_id] = (med, e["median_abs_dev"]["point_estimate"], meta.get("throughput"))
    print("| benchmark | median | 95% CI of the median | MAD (spread) | throughput at the median |")
    print("|---|---:|---:|---:|---:|")
    for full_id, (med, mad, tp) in rows.items():
        ci = med["confidence_interval"]
        point = med["point_estimate"]
        rate = ""
        if tp and "Elements" in tp:
            rate = "%.0f /s" % (tp["Elements"] / point * 1e9)
        print("| %s | %s | %s – %s | ±%s (%.0f%%) | %s |" % (
            full_id, fmt(point), fmt(ci["lower_bound"]), fmt(ci["upper_bound"]), fmt(mad), 100 * mad / point, rate))
    ratios = [(label, rows[a][0]["point_estimate"] / rows[b][0]["point_estimate"])
              for label, a, b in RATIOS if a in rows and b in rows]
    if ratios:
        print()
        for label, r in ratios:
            print("- ratio of medians, %s: %.1fx" % (label, r))


if __name__ == "__main__":
    main()
