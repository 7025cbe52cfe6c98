"""A CA file rewritten under the same path is read again on reload.

A strict upstream (NSD with a certificate from the test CA, DoT only)
verified against ca=FILE. FILE is overwritten with an unrelated CA and
dotward reloaded: verification must now fail (SERVFAIL, never cleartext);
the right CA written back and reloaded: answered again.
"""
import os
import subprocess

import harness
from harness import WWW_A, free_port, rcode_text, rrset_values
from fakeupstream import FakeUpstream
from test_arch_regressions import AUTH_NAME, ask, reload, fill, test_ca  # noqa: F401 (fixture)
from test_state import DotNsd, dot_addr, need_dot  # noqa: F401 (fixture)


def other_ca(d):
    path = os.path.join(d, "other-ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(d, "other-ca.key"), "-out", path, "-days", "30",
                    "-subj", "/CN=an unrelated CA", "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=20)
    with open(path) as f:
        return f.read()


def test_rewritten_ca_file_is_read_again(need_dot, dotward, test_ca, tmp_path):  # noqa: F811
    addr = dot_addr()
    port = free_port(addr)
    plain = FakeUpstream(addr, 241, port=port).start()
    nsd_dir = tmp_path / "nsd"
    os.makedirs(str(nsd_dir))
    for f in ("key", "cert"):
        with open(test_ca[f]) as src, open(str(nsd_dir / (f + ".pem")), "w") as dst:
            dst.write(src.read())
    ca_path = str(tmp_path / "ca.pem")
    with open(test_ca["ca"]) as f:
        good_ca = f.read()
    with open(ca_path, "w") as f:
        f.write(good_ca)
    wrong_ca = other_ca(str(tmp_path))
    conf = ("[server]\nlisten = {listen}\n[forward]\nupstream = %s:%d tls=strict name=%s ca=%s\n"
            "timeout = 1500ms\n" % (addr, port, AUTH_NAME, ca_path))
    nsd = DotNsd(str(nsd_dir), addr, port, do53=False)
    try:
        nsd.start()
        d = dotward(config=conf)
        r = ask(d, "www.test.", "A", timeout=3)
        assert rrset_values(r, "A") == [WWW_A], r

        with open(ca_path, "w") as f:
            f.write(wrong_ca)
        mark = reload(d, fill(conf, d))
        assert d.wait_log("reloaded", 5, after=mark), d.describe()
        r = ask(d, "www.test.", "A", timeout=3)
        assert rcode_text(r) == "SERVFAIL", "verified against the CA file as it was before: %s" % r

        with open(ca_path, "w") as f:
            f.write(good_ca)
        mark = reload(d, fill(conf, d))
        assert d.wait_log("reloaded", 5, after=mark), d.describe()
        r = ask(d, "www.test.", "A", timeout=3)
        assert rrset_values(r, "A") == [WWW_A], r
        assert plain.count() == 0, "a strict upstream's query went in cleartext: %s" % plain.queries()
    finally:
        plain.stop()
        nsd.stop()
