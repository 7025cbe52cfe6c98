#!/usr/bin/env python3
"""scripts/bench.d/dnsperf_parse.py FILE: one dnsperf output -> key=value on one line.

Summary figures (sent, completed, lost, qps, rcodes) come from dnsperf's own summary; latency
percentiles from the per-query lines of `dnsperf -v` ("> RCODE NAME TYPE SECONDS"), since
dnsperf 2.10 has no histogram option. Missing figures print as NA.
"""
import re
import sys

text = open(sys.argv[1], errors="replace").read()
out = {}


def grab(key, pattern, conv=float):
    m = re.search(pattern, text)
    out[key] = conv(m.group(1)) if m else "NA"


grab("sent", r"Queries sent:\s+(\d+)", int)
grab("completed", r"Queries completed:\s+(\d+)", int)
grab("lost", r"Queries lost:\s+(\d+)", int)
grab("qps", r"Queries per second:\s+([\d.]+)")
grab("avg_s", r"Average Latency \(s\):\s+([\d.]+)")
m = re.search(r"Response codes:\s+(.*)", text)
ok = 0
if m:
    for code, n in re.findall(r"(\w+) (\d+) \(", m.group(1)):
        if code in ("NOERROR", "NXDOMAIN"):
            ok += int(n)
done = out["completed"]
out["ok_pct"] = f"{100.0 * ok / done:.2f}" if isinstance(done, int) and done else "NA"
sent = out["sent"]
out["lost_pct"] = f"{100.0 * out['lost'] / sent:.3f}" if isinstance(sent, int) and sent \
    and isinstance(out["lost"], int) else "NA"

lat = sorted(float(x) for x in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", text, re.M))
if lat:
    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))]
    out["lat_n"] = len(lat)
    out["lat_avg_ms"] = f"{1000 * sum(lat) / len(lat):.3f}"
    out["lat_p50_ms"] = f"{1000 * pct(50):.3f}"
    out["lat_p99_ms"] = f"{1000 * pct(99):.3f}"
    out["lat_p999_ms"] = f"{1000 * pct(99.9):.3f}"
print(" ".join(f"{k}={v}" for k, v in out.items()))
