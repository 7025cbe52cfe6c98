#!/usr/bin/python3
"""Writes the seed corpus for test/fuzz/fuzz_state.c into test/fuzz/corpus/state/.

Files in the probe state format of probe/state.h (docs/STATE.md), version 1:
valid ones around the fuzz target's clock (FUZZ_NOW = 1700000100), and
broken ones with one defect each, so the replay test walks the rejection
paths of probe/state.c. The TLS session is the real one the unit test
uses (test/unit/test_probe_state.c, session_b64). Output is
deterministic: same script, same files.
"""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "state")
HDR = "dotward-probe-state 1\n"
COMMENT = "# saved 2023-11-14T22:15:00Z by dotward 0.1.0\n"


def session_b64():
    with open(os.path.join(HERE, "..", "unit", "test_probe_state.c")) as f:
        src = f.read()
    body = re.search(r"session_b64\[\] =\s*((?:\"[^\"]*\"\s*)+);", src).group(1)
    return "".join(re.findall(r"\"([^\"]*)\"", body))


def entry(ip="192.0.2.1", zone="example.org.", status="good", times=None, visits="7", flags="v",
          outcome="ok", reason="", probes="2", successes="2", failures="-", dot="10", fallbacks="1",
          session="-"):
    times = times or ["1700000000.000", "1699999000.000", "1699999999.000", "1700000000.000",
                      "1700000000.000"]
    f = [ip, zone, status] + times + [visits, flags, outcome, reason, probes, successes, failures, dot,
                                      fallbacks, session]
    return "\t".join(f) + "\n"


def files():
    s = {}
    sess = session_b64()
    good = entry()
    bad = entry("198.51.100.7", ".", "bad",
                ["1700000000.000", "1699999990.000", "1699999990.000", "1700000000.000", "0.000"],
                "3", "-", "connect-refused", "connect-refused: Connection refused", "1", "0",
                "connect-refused=1", "0", "0")
    unknown = entry("2001:db8::53", "we\\x5cird\\x09zone.", "unknown",
                    ["1700000050.000", "1700000050.000", "0", "0", "0"], "1", "a", "ok", "", "0", "0",
                    "-", "0", "0")
    with_session = entry("203.0.113.53", "corp.example.", "good", None, "42", "va", "ok", "", "4", "3",
                         "tls-failed=1", "40", "2", sess)
    s["valid_one"] = HDR + COMMENT + good + "end 1\n"
    s["valid_mixed"] = HDR + COMMENT + good + bad + "\n# a comment\n" + unknown + "end 3\n\n# trailing\n"
    s["valid_session"] = HDR + COMMENT + with_session + good + "end 2\n"
    s["valid_empty"] = HDR + "end 0\n"
    s["valid_expired"] = HDR + entry(times=["1600000000.000"] * 5) + bad.replace("1700000000", "1600000000") + "end 2\n"
    # last_response 3d before FUZZ_NOW, plus a fraction: expired once the fraction is dropped.
    s["valid_expiry_fraction"] = HDR + entry(times=["1699740900.5"] * 5) + "end 1\n"
    s["valid_future"] = HDR + entry(times=["1800000000.5"] * 5) + "end 1\n"
    s["valid_counters_max"] = HDR + entry(visits="4294967295", probes="18446744073709551615",
                                          failures="connect-timeout=5,reset=18446744073709551615,bad-answer=1",
                                          dot="4294967296") + "end 1\n"
    s["valid_reason_escapes"] = HDR + entry(status="bad", outcome="reset",
                                            reason="a\\x01b\\x7f\\xff\\x5c\\x5c" + "r" * 400) + "end 1\n"
    s["valid_bad_session"] = HDR + entry(session="QUJD") + "end 1\n"
    s["bad_version"] = "dotward-probe-state 2\n" + good + "end 1\n"
    s["bad_magic"] = "dotward-probe-stat 1\n" + good + "end 1\n"
    s["bad_version_text"] = "dotward-probe-state one\nend 0\n"
    s["bad_no_end"] = HDR + good
    s["bad_truncated"] = (HDR + good + "end 1\n")[:-3]
    s["bad_end_count"] = HDR + good + "end 2\n"
    s["bad_after_end"] = HDR + good + "end 1\n" + good
    s["bad_nul"] = HDR + good[:10] + "\0" + good[11:] + "end 1\n"
    s["bad_fields_17"] = HDR + good.rsplit("\t", 1)[0] + "\n" + "end 1\n"
    s["bad_fields_19"] = HDR + good[:-1] + "\t-\n" + "end 1\n"
    s["bad_ip_port"] = HDR + entry(ip="192.0.2.1:853") + "end 1\n"
    s["bad_ip_spelling"] = HDR + entry(ip="2001:DB8::53") + "end 1\n"
    s["bad_zone_escape"] = HDR + entry(zone="a\\x4") + "end 1\n"
    s["bad_zone_empty"] = HDR + entry(zone="") + "end 1\n"
    s["bad_status_busy"] = HDR + entry(status="busy") + "end 1\n"
    s["bad_time"] = HDR + entry(times=["1e9", "0", "0", "0", "0"]) + "end 1\n"
    s["bad_time_decimals"] = HDR + entry(times=["1.0123456789", "0", "0", "0", "0"]) + "end 1\n"
    s["bad_flags"] = HDR + entry(flags="vv") + "end 1\n"
    s["bad_outcome"] = HDR + entry(outcome="fine") + "end 1\n"
    s["bad_failures_twice"] = HDR + entry(failures="reset=1,reset=2") + "end 1\n"
    s["bad_counter"] = HDR + entry(probes="18446744073709551616") + "end 1\n"
    s["bad_session_base64"] = HDR + entry(session="not base64!") + "end 1\n"
    s["bad_reason_nul_escape"] = HDR + entry(reason="a\\x00b") + "end 1\n"
    s["bad_reason_long"] = HDR + entry(reason="r" * 513) + "end 1\n"
    s["bad_empty_file"] = ""
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, text in sorted(files().items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(text.encode("latin-1"))
    print("%d seeds in %s" % (len(files()), OUT))


if __name__ == "__main__":
    main()
