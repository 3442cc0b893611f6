#!/usr/bin/env python3
"""Checks the function output of a local run (the cargo-lambda-watch log):
- every JSON line parses; every EMF line is valid Embedded Metric Format;
- each message's path shares one request id: the router's "webhook handled" line and the
  worker's lines for the job it queued carry the same id.
Usage: scripts/check-logs.py .local/cargo-lambda-watch.log"""
import json, sys

path = sys.argv[1]
records, emf = [], 0
for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
    line = line.strip()
    if not line.startswith("{"):
        continue  # cargo-lambda's own lines
    try:
        rec = json.loads(line)
    except ValueError as e:
        sys.exit(f"{path}:{n}: not JSON: {e}")
    if "_aws" in rec:
        d = rec["_aws"]["CloudWatchMetrics"][0]
        assert d["Namespace"] and d["Metrics"], f"{path}:{n}: EMF without namespace or metrics"
        for dims in d["Dimensions"]:
            for dim in dims:
                assert isinstance(rec.get(dim), str), f"{path}:{n}: dimension {dim} missing"
        for m in d["Metrics"]:
            assert isinstance(rec.get(m["Name"]), (int, float)), f"{path}:{n}: metric {m['Name']} missing"
        assert isinstance(rec["_aws"]["Timestamp"], int)
        emf += 1
    else:
        records.append(rec)

routed = {r["fields"]["request_id"] for r in records
          if r.get("fields", {}).get("message") == "webhook handled" and r["fields"].get("outcome") == "queued"}
jobs = {}
for r in records:
    rid = r.get("span", {}).get("request_id")
    if rid:
        jobs.setdefault(rid, []).append(r["fields"].get("message"))
missing = [rid for rid in routed if "job handled" not in jobs.get(rid, [])]
if not routed:
    sys.exit("no queued webhook found in the log")
if missing:
    sys.exit(f"request ids without a worker outcome line: {missing}")
if emf == 0:
    sys.exit("no EMF metrics line found")
print(f"logs ok: {len(routed)} messages traced router -> worker by request id, {emf} EMF lines valid")
