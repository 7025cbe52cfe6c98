#!/usr/bin/env python3
"""scripts/bench.d/report.py RAW.CSV: markdown summary of a benchmark run.

Every figure is the median over the valid rounds. ratio = system qps / direct qps of the SAME
round, median of the per-round ratios (the machine is shared and noisy; same-round ratios
cancel most of it). Added latency = system latency - direct latency, from the medians.
A round is invalid (valid=0 in raw.csv) when the row's transport check failed: a DoT row
whose answers did not come over DoT, a Do53 dotward row that used DoT, a failed start.
Invalid rounds are left out of the medians and counted in the table.
If rss100.csv sits next to RAW.CSV, the rss-100 measurement is reported too.
"""
import csv
import os
import statistics
import sys

raw = sys.argv[1]
rows = list(csv.DictReader(open(raw)))
DIRECT = "direct-udp"
MIB = 1024.0
# Targets from the project's issues, per dotward row: (name, key, op, limit, format)
TARGETS = {
    "dotward-do53": [
        ("qps ratio to direct", "ratio", ">=", 0.50, "{:.3f}"),
        ("proxy CPU per query (µs)", "us_per_q", "<=", 8.5, "{:.2f}"),
        ("added avg latency @fixed rate (ms)", "added_avg", "<=", 0.05, "{:.3f}"),
        ("idle RSS (MiB)", "rss_idle_mib", "<=", 4.0, "{:.2f}"),
        ("start -> first answer (ms)", "first_ms", "<=", 20.0, "{:.1f}"),
    ],
    "dotward-dot": [
        ("qps ratio to direct", "ratio", ">=", 0.25, "{:.3f}"),
        ("proxy CPU per query (µs)", "us_per_q", "<=", 15.0, "{:.2f}"),
        ("avg latency @fixed rate (ms)", "lat_avg", "<=", 0.20, "{:.3f}"),
    ],
}
RSS100_LIMIT_MIB = 16.0


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals, f):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return f.format(min(vals)) + "–" + f.format(max(vals))


def fmt(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)


def is_valid(r):
    return r.get("valid") in (None, "", "1")


def verdict(v, op, lim, f):
    if v is None:
        return "not measured"
    shown = float(f.format(v))    # judge what the table shows
    ok = shown >= lim if op == ">=" else shown <= lim
    return "met" if ok else "MISSED by " + f.format(abs(shown - lim))


systems = []
for r in rows:
    if r["system"] not in systems:
        systems.append(r["system"])
direct_qps = {r["round"]: num(r["qps"]) for r in rows if r["system"] == DIRECT and is_valid(r)}

summary = {}
for s in systems:
    allr = [r for r in rows if r["system"] == s]
    rs = [r for r in allr if is_valid(r)]
    g = lambda k: med(num(r.get(k)) for r in rs)
    ratios = [num(r["qps"]) / direct_qps[r["round"]] for r in rs
              if num(r["qps"]) and direct_qps.get(r["round"])]
    kib = lambda k: [None if num(r.get(k)) is None else num(r[k]) / MIB for r in rs]
    summary[s] = {
        "qps": g("qps"), "qps_all": [num(r["qps"]) for r in rs], "ratio": med(ratios),
        "ratio_all": ratios,
        "us_per_q": g("us_per_q"), "us_all": [num(r["us_per_q"]) for r in rs],
        "lost_pct": g("lost_pct"), "ok_pct": g("ok_pct"),
        "lat_avg": g("lat_avg_ms"), "lat_p50": g("lat_p50_ms"), "lat_p99": g("lat_p99_ms"),
        "lat_avg_all": [num(r["lat_avg_ms"]) for r in rs],
        "lat_p99_all": [num(r["lat_p99_ms"]) for r in rs],
        "lat_lost": g("lat_lost_pct"),
        "rss_idle_mib": med(kib("rss_idle_kib")), "rss_idle_all": kib("rss_idle_kib"),
        "rss_load_mib": med(kib("rss_load_kib")),
        "first_ms": None if g("first_answer_s") is None else 1000 * g("first_answer_s"),
        "first_all": [None if num(r["first_answer_s"]) is None else 1000 * num(r["first_answer_s"])
                      for r in rs],
        "dot_pct": g("dot_pct"), "dot_conns": g("dot_conns"),
        "cpu_s": g("cpu_s"), "nsd_cpu_s": g("nsd_cpu_s"), "gen_busy": g("gen_busy_pct"),
        "dot_good_ms": None if g("dot_good_s") is None else 1000 * g("dot_good_s"),
        "problems": sum(int(num(r["log_problems"]) or 0) for r in allr),
        "n": len(rs), "n_all": len(allr),
    }
d = summary.get(DIRECT, {})
for s in systems:
    x = summary[s]
    x["added_avg"] = (x["lat_avg"] - d["lat_avg"]) if d.get("lat_avg") is not None \
        and x["lat_avg"] is not None and s != DIRECT else None
    x["added_p99"] = (x["lat_p99"] - d["lat_p99"]) if d.get("lat_p99") is not None \
        and x["lat_p99"] is not None and s != DIRECT else None

if systems:
    print(f"rounds: {max(x['n_all'] for x in summary.values())}; figures are medians over the "
          "valid rounds; ratio = median of per-round (system qps / direct qps of the same round)\n")
    print("| system | qps median (per round) | ratio to direct | CPU µs/query | "
          "lat avg / p50 / p99 ms @fixed rate | added avg / p99 ms | RSS idle / load MiB | "
          "start -> 1st answer ms | lost % / ok % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        x = summary[s]
        per = ", ".join(fmt(v) for v in x["qps_all"])
        cpu_note = " (NSD)" if s == DIRECT else ""
        name = s if x["n"] == x["n_all"] else f"{s} (**{x['n_all'] - x['n']} of {x['n_all']} rounds INVALID**)"
        print(f"| {name} | {fmt(x['qps'])} ({per}) | {fmt(x['ratio'], '{:.3f}')} | "
              f"{fmt(x['us_per_q'], '{:.2f}')}{cpu_note} | "
              f"{fmt(x['lat_avg'], '{:.3f}')} / {fmt(x['lat_p50'], '{:.3f}')} / "
              f"{fmt(x['lat_p99'], '{:.3f}')} | "
              f"{fmt(x['added_avg'], '{:+.3f}')} / {fmt(x['added_p99'], '{:+.3f}')} | "
              f"{fmt(x['rss_idle_mib'], '{:.1f}')} / {fmt(x['rss_load_mib'], '{:.1f}')} | "
              f"{fmt(x['first_ms'], '{:.1f}')} | "
              f"{fmt(x['lost_pct'], '{:.3f}')} / {fmt(x['ok_pct'], '{:.2f}')} |")

    print("\nSpread over the valid rounds (min–max):\n")
    print("| system | ratio | CPU µs/query | lat avg ms | lat p99 ms | RSS idle MiB | 1st answer ms |")
    print("|---|---|---|---|---|---|---|")
    for s in systems:
        x = summary[s]
        print(f"| {s} | {spread(x['ratio_all'], '{:.3f}')} | {spread(x['us_all'], '{:.2f}')} | "
              f"{spread(x['lat_avg_all'], '{:.3f}')} | {spread(x['lat_p99_all'], '{:.3f}')} | "
              f"{spread(x['rss_idle_all'], '{:.1f}')} | {spread(x['first_all'], '{:.1f}')} |")

    print("\nWho is busy during the throughput run (medians): CPU-seconds used by the system "
          "under test and by NSD, and how busy the client core (dnsperf and NSD) was. A system "
          "under test using about the run length in CPU-seconds is CPU-bound; a client core near "
          "100 % means the qps ratio measures that core as much as the proxy:\n")
    print("| system | SUT CPU-s | NSD CPU-s | client core busy % |")
    print("|---|---|---|---|")
    for s in systems:
        x = summary[s]
        print(f"| {s} | {fmt(x['cpu_s'], '{:.2f}')} | {fmt(x['nsd_cpu_s'], '{:.2f}')} | "
              f"{fmt(x['gen_busy'])} |")

    dots = [s for s in systems if s.endswith("-dot") or s.startswith("dotward")]
    if dots:
        print("\nTransport check: share of dotward's answers that came over DoT during the measured "
              "runs (its counters, SIGUSR1 before and after); TCP connections of the proxy to port "
              "853 (ss, mid-run); launch -> dotward's probe marks the upstream Good:\n")
        print("| system | DoT answers % | connections to :853 | start -> DoT Good ms |")
        print("|---|---|---|---|")
        for s in dots:
            x = summary[s]
            print(f"| {s} | {fmt(x['dot_pct'], '{:.2f}')} | {fmt(x['dot_conns'])} | "
                  f"{fmt(x['dot_good_ms'], '{:.1f}')} |")

    for s in systems:
        if s not in TARGETS:
            continue
        print(f"\nTargets for {s}:\n")
        print("| target | value | limit | |")
        print("|---|---|---|---|")
        for name, key, op, lim, f in TARGETS[s]:
            v = summary[s][key]
            print(f"| {name} | {fmt(v, f)} | {op} {lim} | {verdict(v, op, lim, f)} |")

# CPU per query against the bare relay of the same round: the part a forwarder adds on top
# of what the kernel's UDP path costs on this machine (less sensitive to machine noise)
FLOOR = "relay-do53"
if FLOOR in summary:
    floor_cpu = {r["round"]: num(r["us_per_q"]) for r in rows if r["system"] == FLOOR and is_valid(r)}
    print(f"\nCPU per query relative to {FLOOR} of the same round (median):\n")
    for s in systems:
        if s in (DIRECT, FLOOR):
            continue
        ok = [r for r in rows if r["system"] == s and is_valid(r)
              and num(r["us_per_q"]) and floor_cpu.get(r["round"])]
        rel = [num(r["us_per_q"]) / floor_cpu[r["round"]] for r in ok]
        diff = [num(r["us_per_q"]) - floor_cpu[r["round"]] for r in ok]
        print(f"- {s}: x{fmt(med(rel), '{:.2f}')} ({fmt(med(diff), '{:+.2f}')} µs/query)")

rss100 = os.path.join(os.path.dirname(os.path.abspath(raw)), "rss100.csv")
if os.path.exists(rss100):
    rr = list(csv.DictReader(open(rss100)))
    ok = [r for r in rr if r["valid"] == "1"]
    mib = [num(r["rss_kib"]) / MIB for r in ok if num(r["rss_kib"])]
    mib0 = [num(r["rss_start_kib"]) / MIB for r in ok if num(r["rss_start_kib"])]
    print(f"\nrss-100: dotward with 100 opportunistic upstreams, all Good, a DoT connection open "
          f"to each ({len(ok)} of {len(rr)} rounds valid: >= 100 connections opened and "
          "established):\n")
    print("| | VmRSS MiB median (per round) | limit | |")
    print("|---|---|---|---|")
    g0 = med(num(r.get("good_start")) for r in ok)
    c0 = med(num(r.get("conns_start")) for r in ok)
    print(f"| after probe-on-start, before any query ({fmt(g0)} Good, {fmt(c0)} DoT connections "
          f"open) | {fmt(med(mib0), '{:.2f}')} ({', '.join(fmt(v, '{:.2f}') for v in mib0)}) | | |")
    v = med(mib)
    print(f"| 100 DoT connections open | {fmt(v, '{:.2f}')} "
          f"({', '.join(fmt(v2, '{:.2f}') for v2 in mib)}) | <= {RSS100_LIMIT_MIB} | "
          f"{verdict(v, '<=', RSS100_LIMIT_MIB, '{:.2f}')} |")
    if len(ok) < len(rr):
        print("\n**rss-100: some rounds INVALID** (fewer than 100 DoT connections): see rss100.csv")

bad = [s for s in systems if summary[s]["problems"]]
if bad:
    print("\nWarnings/errors in the logs of: " + ", ".join(bad) + " (see the *.log files)")
