"""asynchat_core.workers with real processes: the server of
tests/scaleout_servers.py run by ``workers.serve`` in its own session,
driven over 127.0.0.1, with both builds (chosen through the environment,
as users choose)."""
import random
import re
import signal
import threading
import time

import pytest

import impls
from asynchat_core import workers
from scaleout_client import TIMEOUT, Failed, Retryable, ServerProcess, fields, get, request

# workers.serve needs fork(); the tests read the process tree from /proc
pytestmark = pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                                reason="reads worker processes from /proc (Linux)")


@pytest.fixture(params=impls.params(impls.OURS))
def implementation(request):
    return request.param


def distinct_workers(port, want, attempts=200):
    seen = set()
    for _ in range(attempts):
        seen.add(fields(get(port, retries=3))["pid"])
        if len(seen) >= want:
            break
    return seen


@pytest.mark.skipif(not workers.reuse_port_supported(), reason="no balancing SO_REUSEPORT")
def test_reuse_port_workers_share_the_load(tmp_path, implementation):
    srv = ServerProcess(tmp_path, "--workers", 2, implementation=implementation)
    try:
        pids = srv.worker_pids()
        assert len(pids) == 2
        # the kernel hashes each new connection to one of the two sockets:
        # 200 connections all landing on one is a 2**-199 chance
        assert distinct_workers(srv.port, 2) == {str(p) for p in pids}
    finally:
        assert srv.stop() == 0
    assert srv.log().count("exited with code 0") == 2


def test_inherited_listener_mode(tmp_path, implementation):
    srv = ServerProcess(tmp_path, "--workers", 2, "--no-reuse-port", implementation=implementation)
    try:
        body = fields(get(srv.port))
        assert int(body["pid"]) in srv.worker_pids()
    finally:
        assert srv.stop() == 0


def test_crash_loop_backs_off(tmp_path, implementation):
    srv = ServerProcess(tmp_path, "--workers", 1, "--crash", implementation=implementation)
    try:
        time.sleep(2.0)  # (lets the crash loop run; the bound below is what is checked)
    finally:
        srv.stop()
    restarts = re.findall(r"restarting in ([0-9.]+)s", srv.log())
    # back-off 0.1 s doubling up to 2 s: about 5 restarts in 2 s, where a
    # crash loop without back-off makes hundreds; generous either way
    assert 2 <= len(restarts) <= 12, restarts
    delays = [float(d) for d in restarts]
    assert delays == sorted(delays) and delays[-1] > delays[0]
    assert "crashing on purpose" in srv.log()


def test_graceful_shutdown_under_load(tmp_path, implementation):
    srv = ServerProcess(tmp_path, "--workers", 2, implementation=implementation)
    failed, done, in_flight_ok = [], [], []
    stop = threading.Event()
    started = threading.Barrier(5)

    def keep_alive_client():
        # fast requests on a keep-alive connection, reconnecting as a
        # client does after a "Connection: close" or an unanswered close
        started.wait()
        sock = None
        while not stop.is_set():
            try:
                if sock is None:
                    sock = __import__("socket").create_connection(("127.0.0.1", srv.port),
                                                                  timeout=TIMEOUT)
                _, keep = request(sock, "/fast")
                done.append(1)
                if not keep:
                    sock.close()
                    sock = None
            except Failed as exc:
                failed.append(str(exc))
                break
            except (Retryable, OSError):
                if sock is not None:
                    sock.close()
                    sock = None
                if stop.is_set():
                    break
                time.sleep(0.005)
        if sock is not None:
            sock.close()

    def slow_client(sent):
        # a request in flight when SIGTERM arrives must be answered
        import socket

        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
            started.wait()
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            sent.set()
            try:
                body = request_tail(s)
                in_flight_ok.append(body)
            except Exception as exc:
                failed.append("slow: %r" % exc)

    # an idle keep-alive connection: the stop closes it (workers.on_stop)
    # instead of waiting for the shutdown deadline
    import socket

    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    request(idle, "/first")
    sent = threading.Event()
    threads = [threading.Thread(target=keep_alive_client) for _ in range(4)]
    threads.append(threading.Thread(target=slow_client, args=(sent,)))
    for t in threads:
        t.start()
    try:
        assert sent.wait(TIMEOUT)
        time.sleep(0.1)  # the slow request is being served (it takes 0.3 s)
        code = srv.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert code == 0
    with idle:
        assert idle.recv(100) == b""  # closed, nothing sent
    assert failed == []
    assert len(in_flight_ok) == 1 and "path=/slow" in in_flight_ok[0]
    assert len(done) > 0
    # the workers finished their channels themselves, none was cut at the deadline
    assert "at the shutdown deadline" not in srv.log()


def request_tail(sock):
    """Read one response (the request was sent already)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed("EOF: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed("EOF mid-body")
        body += chunk
    return body.decode()


@pytest.mark.parametrize("reuse", ["reuse-port", "inherited"])
def test_chaos_kill_workers_under_load(tmp_path, implementation, reuse):
    if reuse == "reuse-port" and not workers.reuse_port_supported():
        pytest.skip("no balancing SO_REUSEPORT")
    extra = ["--no-reuse-port"] if reuse == "inherited" else []
    srv = ServerProcess(tmp_path, "--workers", 2, *extra, implementation=implementation)
    answers, errors = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                # a client that retries what it may retry (connection reset
                # or refused before any response byte); a worker killed in
                # the middle of a response fails that request for real
                answers.append((time.monotonic(), fields(get(srv.port, retries=5))["pid"]))
            except Exception as exc:
                errors.append(repr(exc))

    try:
        fds_before = srv.fds()
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        rng = random.Random(21)
        kills = []
        for _ in range(6):
            time.sleep(0.3)
            # a random worker, while both run (killing the last one is an
            # outage no supervisor can hide)
            deadline = time.monotonic() + 10
            while len(srv.worker_pids()) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            victim = rng.choice(srv.worker_pids())
            __import__("os").kill(victim, signal.SIGKILL)
            kills.append(time.monotonic())
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
        # the parent restarted every victim; no descriptor left behind
        deadline = time.monotonic() + 10
        while len(srv.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(srv.worker_pids()) == 2
        assert srv.fds() == fds_before
    finally:
        assert srv.stop() == 0
    log = srv.log()
    assert log.count("killed by SIGKILL") == 6, log
    # the listener kept answering: requests succeeded after every kill
    for when in kills:
        assert any(t > when for t, _ in answers)
    # only a response in flight at the instant of a kill can be cut (they
    # are tiny: 0 in every run so far); queued connections are retried
    assert len(errors) <= 3, errors
    assert len(answers) > 20
    print("chaos %s: %d answers, %d failed requests" % (reuse, len(answers), len(errors)))


LEGACY_TLS_SERVER = r'''
import json, os, ssl, sys
import asynchat_core
asynchat_core.install()
import asynchat, asyncore                       # legacy imports: asynchat_core's
from asynchat_core import tls, workers

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2])

class Echo(tls.TLSMixin, asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock)
        self.set_terminator(b"\n")
        self.buf = []
    def collect_incoming_data(self, data):
        self.buf.append(data)
    def found_terminator(self):
        line, self.buf = b"".join(self.buf), []
        # a timer in the worker's loop answers
        asyncore_timer = asynchat_core.asyncore.call_later(
            0.05, self.push, b"%s pid=%d installed=%d\n"
            % (line, os.getpid(), asyncore is asynchat_core.asyncore))

class Listener(tls.TLSListenerMixin, asyncore.dispatcher):
    tls_context = ctx
    def handle_accepted(self, sock, addr):
        Echo(sock)

def ready(address):
    with open(sys.argv[1] + ".tmp", "w") as fh:
        json.dump({"port": address[1], "pid": os.getpid()}, fh)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])

workers.serve(lambda sock: workers.listen_on(Listener(), sock), ("127.0.0.1", 0), 2,
              ready=ready, shutdown_timeout=2.0)
'''


def test_install_timers_and_tls_inside_workers(tmp_path, implementation):
    import json
    import os
    import socket
    import ssl
    import subprocess
    import sys

    import trustme

    from child_procs import NEW_GROUP, env_for, kill_group

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    script = tmp_path / "legacy_tls_server.py"
    script.write_text(LEGACY_TLS_SERVER)
    ready = tmp_path / "ready.json"
    env = env_for(implementation)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(script), str(ready), str(pem)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, **NEW_GROUP)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "log").read_text()
            time.sleep(0.02)
        port = json.loads(ready.read_text())["port"]
        client = ssl.create_default_context()
        ca.configure_trust(client)
        seen = set()
        for i in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                with client.wrap_socket(raw, server_hostname="127.0.0.1") as c:
                    c.sendall(b"hi %d\n" % i)
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = c.recv(100)
                        assert chunk, data
                        data += chunk
            assert data.startswith(b"hi %d pid=" % i) and data.endswith(b" installed=1\n")
            seen.add(data.split(b"pid=")[1].split()[0])
            if len(seen) == 2 and i >= 3:
                break
        if workers.reuse_port_supported():
            assert len(seen) == 2  # both workers served TLS
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        kill_group(proc)
        proc.wait()


class _ProbeSocket:
    """Stands in for the probe socket of workers._balancing_option."""

    def __init__(self, calls, refuse):
        self.calls, self.refuse = calls, refuse

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def setsockopt(self, level, option, value):
        self.calls.append(option)
        if option in self.refuse:
            raise OSError(92, "Protocol not available")


@pytest.mark.parametrize("platform,constants,refuse,want", [
    ("linux", {"SO_REUSEPORT": 15}, (), 15),
    ("freebsd13", {"SO_REUSEPORT": 0x200}, (), 0x10000),  # before Python 3.14 names it
    ("freebsd14", {"SO_REUSEPORT": 0x200, "SO_REUSEPORT_LB": 0x10000}, (), 0x10000),
    ("freebsd11", {"SO_REUSEPORT": 0x200}, (0x10000,), 0),  # kernel without it: one socket
    ("darwin", {"SO_REUSEPORT": 0x200}, (), 0),  # no balancing: one inherited socket
])
def test_the_balancing_option_per_platform(monkeypatch, platform, constants, refuse, want):
    import types

    calls = []
    fake_socket = types.SimpleNamespace(SOL_SOCKET=1, **constants)
    fake_socket.socket = lambda *a: _ProbeSocket(calls, refuse)
    monkeypatch.setattr(workers, "socket", fake_socket)
    monkeypatch.setattr(workers.sys, "platform", platform)
    monkeypatch.setattr(workers, "_balancing", None)
    assert workers._balancing_option() == want
    assert workers.reuse_port_supported() is bool(want)
    assert calls == ([want] if want else list(refuse))  # probed once, then remembered
