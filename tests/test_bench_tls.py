"""The TLS scenario of ``python -m asynchat_core.bench`` (issue 11).

A short run against asynchat_core, the stdlib with the hand-written mixin
and asyncio, with the built-in client (which checks every echoed byte);
and proof that the client's check fails on a server that corrupts a byte.
Bounded to a few seconds of load on 127.0.0.1.
"""
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from asynchat_core.bench import tls
from asynchat_core.bench.tls_client import VerifyError, echo_block, run_tls_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cli_tls_scenario(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    compiled = importlib.util.find_spec("asynchat_core._chat_c") is not None
    impls = (["cython"] if compiled else []) + ["python", "asyncio", "stdlib"]
    cmd = [
        sys.executable, "-m", "asynchat_core.bench", "--scenarios", "tls",
        "--impls", ",".join(impls), "--duration", "0.3", "--rounds", "1",
        "--echo-clients", "3", "--clients", "4", "--builtin-client", "--json", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"]
    found = {r["impl"] for r in data["records"]}
    # the stdlib comparator may be missing (3.12+ without pyasynchat); the rest must run
    for impl in impls[:-1]:
        assert impl in found, (impl, data["skipped"])
    for r in data["records"]:
        assert r["scenario"] == "tls"
        assert r["case"] in (tls.ECHO_CASE, tls.HTTPS_CASE)
        assert r["rate"] > 0 and r["requests"] > 0, r
        assert r["load"] == "built-in"
        # every reply byte counted was compared with the expected byte
        assert r["verified_bytes"] >= r["requests"] * (1024 if r["case"] == tls.ECHO_CASE else 1)
        assert r["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert r["rate_min"] <= r["rate"] <= r["rate_max"]
    assert "Scenario 5: TLS" in proc.stdout and tls.ECHO_CASE in proc.stdout
    if compiled:
        # the ratio columns need asynchat_core (Cython) and a comparator
        assert "cython/this" in proc.stdout


class _CorruptingEchoServer(threading.Thread):
    """A TLS echo server that flips one byte of its 3000th reply byte: the client must notice."""

    def __init__(self, context):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.context = context

    def run(self):
        with self.listener, self.context.wrap_socket(self.listener.accept()[0],
                                                     server_side=True) as conn:
            conn.settimeout(10)
            sent = 0
            try:
                while True:
                    data = bytearray(conn.recv(65536))
                    if not data:
                        return
                    if sent <= 3000 < sent + len(data):
                        data[3000 - sent] ^= 0x20
                    conn.sendall(data)
                    sent += len(data)
            except OSError:
                return


def test_tls_client_detects_a_corrupted_echo(tmp_path):
    cafile, certfile, keyfile = tls.make_certificates(str(tmp_path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    server = _CorruptingEchoServer(ctx)
    server.start()
    with pytest.raises(VerifyError, match="at byte 3000"):
        run_tls_client("echo", server.port, conns=1, depth=8, duration=2.0, cafile=cafile)
    server.join(10)
    assert not server.is_alive()


def test_echo_lines_differ_per_connection_and_position():
    one = echo_block(0, 4, 1024)
    lines = one.split(b"\n")[:-1]
    assert len(one) == 4 * 1024 and len(set(lines)) == 4
    assert echo_block(1, 4, 1024) != one


def test_bench_tls_without_wrk_reports_it_and_uses_the_builtin_client(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(tmp_path)  # no wrk (nor anything else) on the PATH
    cmd = [sys.executable, "-m", "asynchat_core.bench", "--scenarios", "tls", "--impls", "asyncio",
           "--duration", "0.2", "--echo-clients", "2", "--clients", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"]
    assert "wrk missing" in data["skipped"].get("wrk (tls)", ""), data["skipped"]
    https = [r for r in data["records"] if r["case"] == tls.HTTPS_CASE]
    assert https and https[0]["load"] == "built-in" and https[0]["verified_bytes"] > 0


def _tls_record(impl, rate, cpu):
    return {"scenario": "tls", "case": tls.ECHO_CASE, "impl": impl, "unit": "req/s",
            "rate": rate, "cpu_us": cpu, "rounds": 1}


@pytest.mark.parametrize("python_name", ["python", "pure"])
def test_tls_table_reads_json_from_before_and_after_the_rename(tmp_path, python_name):
    # files written before the rename call the Python build "pure"
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"records": [
        _tls_record("cython", 3000.0, 100.0), _tls_record(python_name, 1500.0, 200.0),
        _tls_record("stdlib", 1000.0, 300.0)]}))
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "asynchat_core.bench.tls", "table", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ("| case | metric | cython | python | stdlib | cython vs stdlib "
                        "| cython vs python |")
    assert lines[2] == "| %s | req/s | 3000 | 1500 | 1000 | 3.00x | 2.00x |" % tls.ECHO_CASE
    assert "pure" not in proc.stdout
