"""The HTTP metrics endpoint (--metrics-listen): Prometheus text that parses
and moves with traffic, /health (200 serving, 503 draining), 404/405/400,
and the limits that keep a bad HTTP client from hurting DNS service: request
size, the per-connection deadline (slowloris), the connection cap."""
import select
import signal
import socket
import time

import pytest

import harness
from harness import WWW_A, ask, rcode_text, rrset_values, wait_until

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # Debian package python3-prometheus-client (scripts/deps.sh)
    text_string_to_metric_families = None

DEADLINE = 2.0      # METRICS_HTTP_DEADLINE
MAX_CONNS = 32      # METRICS_HTTP_MAX_CONNS


def upstream_of(srv):
    return "%s:%d" % (srv.addr, srv.port)


def start(dotward, upstreams):
    """dotward with a metrics endpoint on its own 127.0.0.x address."""
    maddr = harness.ADDRS.take()
    mport = harness.free_port(maddr)
    d = dotward(upstreams=upstreams, args=["--metrics-listen", "%s:%d" % (maddr, mport)])
    d.metrics = (maddr, mport)
    return d


def http_raw(d, request, timeout=3.0, reset_ok=False):
    """Send `request` (bytes), read to EOF. Returns (status or None, headers, body).
    A reset fails the test unless `reset_ok` (then it counts as a close)."""
    s = socket.create_connection(d.metrics, timeout=timeout)
    try:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                if reset_ok:
                    break
                # dotward reads what is left of a request before closing,
                # precisely so that the close is no reset
                raise AssertionError("connection reset after %r" % data[:100])
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0] == "HTTP/1.1", lines[0]
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body), (headers, body[:200])
    assert headers.get("connection") == "close"
    return int(parts[1]), headers, body


def get(d, path, method="GET", reset_ok=False):
    return http_raw(d, ("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)).encode(), reset_ok=reset_ok)


def scrape(d):
    """GET /metrics, parsed: {(sample name, sorted label items): value}, {family: type}."""
    if text_string_to_metric_families is None:
        pytest.skip("python3-prometheus-client is not installed (Debian package, scripts/deps.sh)")
    status, headers, body = get(d, "/metrics")
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    text = body.decode()
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in types, "family %s twice" % fam.name
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, "sample %s twice" % (key,)
            samples[key] = s.value
    # HELP and TYPE once per family, in the raw text too
    for kind in ("# HELP ", "# TYPE "):
        names = [ln.split()[2] for ln in text.splitlines() if ln.startswith(kind)]
        assert len(names) == len(set(names)), kind
    return samples, types


def val(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, "no sample %s%s" % (name, labels)
    return samples[key]


def check_histogram(samples, transport):
    h = "dotward_upstream_latency_seconds"
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items()
                      if k[0] == h + "_bucket" and dict(k[1]).get("transport") == transport))
    assert len(buckets) == 14, buckets
    assert buckets[-1][0] == float("inf")
    values = [v for _, v in buckets]
    assert values == sorted(values), "buckets not cumulative: %s" % buckets
    assert values[-1] == val(samples, h + "_count", transport=transport)
    return val(samples, h + "_count", transport=transport), val(samples, h + "_sum", transport=transport)


def test_metrics_parse_and_move_with_traffic(dotward, nsd):
    d = start(dotward, [upstream_of(nsd)])
    before, types = scrape(d)
    for fam, typ in [("dotward_client_queries", "counter"), ("dotward_upstream_queries", "counter"),
                     ("dotward_answers", "counter"), ("dotward_servfail", "counter"),
                     ("dotward_dot_fallbacks", "counter"), ("dotward_probes_started", "counter"),
                     ("dotward_dot_failures", "counter"), ("dotward_upstream_spoofed", "counter"),
                     ("dotward_probe_entries", "gauge"), ("dotward_queries_in_flight", "gauge"),
                     ("dotward_tcp_clients", "gauge"), ("dotward_dot_connections_open", "gauge"),
                     ("dotward_uptime_seconds", "gauge"),
                     ("dotward_upstream_latency_seconds", "histogram")]:
        assert types.get(fam) == typ, (fam, types.get(fam))
    for st in ("unknown", "busy", "good", "bad"):
        val(before, "dotward_probe_entries", status=st)
    for reason in ("connect", "tls", "timeout", "closed", "bad_answer"):
        val(before, "dotward_dot_fallbacks_total", reason=reason)

    for _ in range(5):
        r = ask(d.addr, d.port, "www.test.", "A", "udp")
        assert rrset_values(r, "A") == [WWW_A]
    for _ in range(3):
        r = ask(d.addr, d.port, "www.test.", "A", "tcp")
        assert rrset_values(r, "A") == [WWW_A]
    for _ in range(2):
        r = ask(d.addr, d.port, "nosuchname.test.", "A", "udp")
        assert rcode_text(r) == "NXDOMAIN"

    after, _ = scrape(d)

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta("dotward_client_queries_total", transport="udp") == 7
    assert delta("dotward_client_queries_total", transport="tcp") == 3
    assert delta("dotward_upstream_queries_total", transport="udp") >= 7
    assert delta("dotward_upstream_queries_total", transport="tcp") >= 3
    assert delta("dotward_answers_total", rcode="NOERROR") == 8
    assert delta("dotward_answers_total", rcode="NXDOMAIN") == 2
    assert delta("dotward_servfail_total") == 0
    n0, s0 = check_histogram(before, "udp")
    n1, s1 = check_histogram(after, "udp")
    assert n1 - n0 >= 7 and s1 > s0
    n0, _ = check_histogram(before, "tcp")
    n1, _ = check_histogram(after, "tcp")
    assert n1 - n0 >= 3
    check_histogram(after, "dot")
    assert val(after, "dotward_uptime_seconds") > val(before, "dotward_uptime_seconds")
    assert val(after, "dotward_queries_in_flight") == 0

    # The same counters as the SIGUSR1 stats line, with no traffic in between.
    st = d.stats()
    final, _ = scrape(d)
    assert val(final, "dotward_client_queries_total", transport="udp") == st["queries_udp"]
    assert val(final, "dotward_client_queries_total", transport="tcp") == st["queries_tcp"]
    assert val(final, "dotward_upstream_queries_total", transport="udp") == st["upstream_udp"]
    assert sum(v for k, v in final.items() if k[0] == "dotward_answers_total") == st["answered"]
    assert val(final, "dotward_upstream_timeouts_total") == st["upstream_timeouts"]


def test_health_and_errors(dotward, nsd):
    d = start(dotward, [upstream_of(nsd)])
    status, headers, body = get(d, "/health")
    assert (status, body) == (200, b"ok\n")
    assert get(d, "/nope")[0] == 404
    assert get(d, "/metricsX")[0] == 404
    status, headers, _ = get(d, "/metrics", method="POST")
    assert status == 405 and headers.get("allow") == "GET"
    assert get(d, "/health", method="HEAD")[0] == 405
    # a POST with a body: answered, body read and dropped, no reset
    status, _, _ = http_raw(d, b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert status == 405
    assert get(d, "/metrics?x=1")[0] == 200
    assert http_raw(d, b"GET /health HTTP/1.0\r\n\r\n")[0] == 200
    assert http_raw(d, b"GET /health\n\n")[0] == 400          # HTTP/0.9
    assert http_raw(d, b"GET  HTTP/1.1\r\n\r\n")[0] == 400
    assert http_raw(d, b"\x00\x01\x02 / HTTP/1.1\r\n\r\n")[0] == 405
    # a request in many small writes (the blank line split over two) still works
    s = socket.create_connection(d.metrics, timeout=3)
    for part in (b"GET /hea", b"lth HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"):
        s.sendall(part)
        time.sleep(0.05)
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok\n"), data
    assert ask(d.addr, d.port, "www.test.", "A").rcode() == 0


def test_health_503_while_draining(dotward, fake):
    f = fake(delay=1.5)     # keeps one query in flight, so the drain lasts ~1.5 s
    d = start(dotward, [f.server])
    assert get(d, "/health")[0] == 200
    q = harness.make_query("slow.fake.", "A").to_wire()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(q, (d.addr, d.port))
    assert wait_until(lambda: f.count() >= 1, cap=3), "query never reached the upstream"
    d.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "draining" in d.stderr(), cap=3), d.describe()
    status, _, body = get(d, "/health")
    assert (status, body) == (503, b"draining\n")
    if text_string_to_metric_families is not None:
        samples, _ = scrape(d)
        assert val(samples, "dotward_draining") == 1
        assert val(samples, "dotward_queries_in_flight") == 1
    s.settimeout(3)
    assert s.recv(512)  # the query in flight is still answered
    s.close()
    assert d.wait_exit() == 0


def dns_ok(d):
    r = ask(d.addr, d.port, "www.test.", "A", timeout=2)
    return rrset_values(r, "A") == [WWW_A]


def test_oversized_request_cut_off(dotward, nsd):
    d = start(dotward, [upstream_of(nsd)])
    for line in (b"GET /" + b"a" * 10240 + b" HTTP/1.1\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"b" * 10240 + b"\r\n\r\n"):
        t0 = time.monotonic()
        # 431, not a reset: the rest of the request is read and dropped
        # before the close, so the answer is not lost.
        status, _, body = http_raw(d, line)
        assert status == 431, (status, body)
        assert time.monotonic() - t0 < DEADLINE + 1.5
    assert dns_ok(d)
    assert get(d, "/health")[0] == 200


def test_slow_client_cut_off(dotward, nsd):
    """One byte per 0.5 s never finishes a request: the connection is closed
    about DEADLINE seconds after it opened, and DNS is answered meanwhile."""
    d = start(dotward, [upstream_of(nsd)])
    slow = socket.create_connection(d.metrics, timeout=3)
    t0 = time.monotonic()
    closed_at = None
    request = b"GET /metrics HTTP/1.1\r\n"
    i = 0
    while time.monotonic() - t0 < DEADLINE + 3:
        try:
            slow.sendall(request[i % len(request):i % len(request) + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic()
            break
        i += 1
        assert dns_ok(d)                       # the loop is not held up
        assert get(d, "/health")[0] == 200     # nor is the endpoint for others
        r, _, _ = select.select([slow], [], [], max(0.0, t0 + i * 0.5 - time.monotonic()))
        if r:
            try:
                data = slow.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", "answered an unfinished request: %r" % data
            closed_at = time.monotonic()
            break
    slow.close()
    assert closed_at is not None, "slow client still connected after %.1f s" % (DEADLINE + 3)
    took = closed_at - t0
    assert DEADLINE - 0.3 <= took <= DEADLINE + 1.0, "cut off after %.2f s" % took
    assert dns_ok(d)


def test_connection_cap(dotward, nsd):
    """40 idle connections: MAX_CONNS are kept (until the deadline), the rest
    closed at once; a new request meanwhile is closed too; DNS still works."""
    d = start(dotward, [upstream_of(nsd)])
    socks = [socket.create_connection(d.metrics, timeout=3) for _ in range(40)]
    try:
        t0 = time.monotonic()
        closed = set()

        def poll_closed(wait):
            r, _, _ = select.select([s for s in socks if s not in closed], [], [], wait)
            for s in r:
                try:
                    data = s.recv(16)
                except ConnectionResetError:
                    data = b""
                assert data == b"", data
                closed.add(s)

        while len(closed) < 40 - MAX_CONNS and time.monotonic() - t0 < 1.0:
            poll_closed(0.1)
        assert len(closed) == 40 - MAX_CONNS, "%d of 40 closed at once" % len(closed)
        poll_closed(0.3)
        assert len(closed) == 40 - MAX_CONNS, "kept connections closed early"
        assert dns_ok(d)
        assert ask(d.addr, d.port, "www.test.", "A", "tcp").rcode() == 0
        # the cap applies to a real request too: closed unread (maybe reset), no answer
        assert get(d, "/health", reset_ok=True)[0] is None
        # the deadline frees the slots
        while len(closed) < 40 and time.monotonic() - t0 < DEADLINE + 2:
            poll_closed(0.1)
        assert len(closed) == 40, "%d of 40 closed %.1f s later" % (len(closed), DEADLINE + 2)
        assert get(d, "/health")[0] == 200
        assert dns_ok(d)
    finally:
        for s in socks:
            s.close()
