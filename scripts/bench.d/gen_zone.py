#!/usr/bin/env python3
"""scripts/bench.d/gen_zone.py OUTDIR [NAMES] [QUERIES]: benchmark zone and dnsperf query file.

bench.test. has every record at TTL 0, so no cache in a proxy can absorb load: every query
measures the forwarding path. queries.txt mixes 50% A / 30% AAAA / 20% TXT, 5% NXDOMAIN names.
The generator is seeded, so every run (and every machine) queries the same sequence.
"""
import os
import random
import sys

out = sys.argv[1]
names = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
nq = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
origin = "bench.test"
os.makedirs(out, exist_ok=True)

lines = [f"$ORIGIN {origin}.", "$TTL 0",
         f"@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 0",
         f"@ IN NS ns1.{origin}.", "ns1 IN A 127.0.0.1"]
for i in range(names):
    lines.append(f"h{i} IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
    lines.append(f"h{i} IN AAAA fd00::{i:x}")
    # ~60-byte TXT: answers of realistic size, not only minimal A records
    lines.append(f'h{i} IN TXT "bench record {i} v=spf1 -all padding-{i * 7919 % 100000:05d}"')
with open(os.path.join(out, origin + ".zone"), "w") as f:
    f.write("\n".join(lines) + "\n")

rnd = random.Random(42)
types = ["A"] * 50 + ["AAAA"] * 30 + ["TXT"] * 20
with open(os.path.join(out, "queries.txt"), "w") as f:
    for _ in range(nq):
        if rnd.random() < 0.05:
            name = f"nx{rnd.randrange(10**6)}"
        else:
            name = f"h{rnd.randrange(names)}"
        f.write(f"{name}.{origin} {rnd.choice(types)}\n")
print(f"zone: {names} names x A/AAAA/TXT (TTL 0); queries: {nq} lines -> {out}", file=sys.stderr)
