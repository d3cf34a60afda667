"""A real HAProxy (and nginx's stream module, when installed) on 127.0.0.1
in front of two backends, each ``workers.serve`` with two workers and a
``ProxyListenerMixin`` listener; the configurations are the blocks of
docs/scaleout.md, run as printed (HAProxy reads its ports from the
environment; nginx's placeholders are filled in)."""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import impls
from child_procs import NEW_GROUP, kill_group
from scaleout_client import TIMEOUT, ServerProcess, fields

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "scaleout.md")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
WRK = shutil.which("wrk")


def doc_block(lang):
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    blocks = re.findall(r"```%s\n(.*?)```" % lang, text, re.S)
    assert len(blocks) == 1, "docs/scaleout.md: one ```%s block expected" % lang
    return blocks[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the backends are workers.serve processes, found through /proc
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads worker processes from /proc (Linux)")


@pytest.fixture(params=impls.params(impls.OURS))
def implementation(request):
    return request.param


def http_get(port, path="/"):
    """One request through the balancer on a new connection: ``(status,
    body, client_address)``; status 0 when the connection failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            me = s.getsockname()
            s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return 0, "", None
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d+)", head)
    return (int(match.group(1)) if match else 0), body.decode("latin-1"), me


class Balancer:
    def __init__(self, cmd, tmp_path, env=None):
        self.log_path = str(tmp_path / "balancer.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, **NEW_GROUP)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self):
        kill_group(self.proc)
        self.proc.wait()


def wait_both_up(front, backends, timeout=20):
    """Until requests through ``front`` reached both backends' workers."""
    want = {str(b.pid) for b in backends}
    parents = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body, _ = http_get(front)
        if status == 200:
            pid = int(fields(body)["pid"])
            for b in backends:
                if pid in b.worker_pids():
                    parents[str(b.pid)] = True
            if set(parents) == want:
                return
        time.sleep(0.05)
    raise AssertionError("backends not both up through the balancer")


@pytest.fixture
def haproxy_stack(tmp_path, implementation):
    if HAPROXY is None:
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    b1 = ServerProcess(tmp_path, "--workers", 2, "--proxy", 2, "--shutdown-timeout", 3,
                       implementation=implementation, name="b1")
    b2 = ServerProcess(tmp_path, "--workers", 2, "--proxy", 2, "--shutdown-timeout", 3,
                       implementation=implementation, name="b2")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(doc_block("haproxy"))
    front = free_port()
    env = dict(os.environ, FRONT_PORT=str(front), BACKEND1_PORT=str(b1.port),
               BACKEND2_PORT=str(b2.port))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], env=env, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    lb = Balancer([HAPROXY, "-db", "-f", str(cfg)], tmp_path, env)
    stack = {"front": front, "backends": [b1, b2], "lb": lb, "tmp": tmp_path,
             "implementation": implementation}
    try:
        wait_both_up(front, [b1, b2])
        yield stack
    finally:
        lb.stop()
        for b in stack["backends"]:
            b.stop()


def test_handlers_see_the_true_client(haproxy_stack):
    front = haproxy_stack["front"]
    for _ in range(10):
        status, body, me = http_get(front)
        assert status == 200
        seen = fields(body)
        assert seen["client"] == "%s:%d" % me  # our socket's own address and port
        assert seen["proxied"] == "1"


def run_load(front, seconds_event, threads=4):
    results = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def load():
        while not seconds_event.is_set():
            status, body, _ = http_get(front)
            with lock:
                if status == 200 and "pid=" in body:
                    results["ok"] += 1
                else:
                    results["failed"].append((status, body[:80]))

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for w in workers:
        w.start()
    return results, workers


def test_killing_a_backend_loses_no_request(haproxy_stack):
    front, (b1, b2) = haproxy_stack["front"], haproxy_stack["backends"]
    stop = threading.Event()
    results, threads = run_load(front, stop)
    try:
        time.sleep(0.5)
        kill_group(b1.proc)  # the whole backend: parent and workers, SIGKILL
        b1.proc.wait()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    print("kill a backend: %d answered, %d failed" % (results["ok"], len(results["failed"])))
    assert results["failed"] == []
    assert results["ok"] > 20
    # the survivor answers alone now
    assert int(fields(http_get(front)[1])["pid"]) in b2.worker_pids()


@pytest.mark.skipif(WRK is None, reason="wrk not installed (apt-get install wrk)")
def test_graceful_backend_restart_under_wrk(haproxy_stack):
    front, (b1, b2) = haproxy_stack["front"], haproxy_stack["backends"]
    wrk = subprocess.Popen([WRK, "-t1", "-c8", "-d4s", "http://127.0.0.1:%d/" % front],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        assert b1.stop() == 0  # SIGTERM: graceful
        assert "SIGTERM: stopping 2 workers" in b1.log()
        again = ServerProcess(haproxy_stack["tmp"], "--workers", 2, "--proxy", 2,
                              "--port", b1.port, implementation=haproxy_stack["implementation"],
                              name="b1-again")
        haproxy_stack["backends"].append(again)
        out, _ = wrk.communicate(timeout=30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    print("graceful restart under wrk:", " ".join(out.split("\n")[-4:]))
    assert requests > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    # and the restarted backend serves again
    wait_both_up(front, [again, b2])


@pytest.fixture
def nginx_stack(tmp_path, implementation):
    if NGINX is None or not os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
        pytest.skip("nginx with the stream module not installed")
    b1 = ServerProcess(tmp_path, "--workers", 2, "--proxy", 1, implementation=implementation,
                       name="b1")
    b2 = ServerProcess(tmp_path, "--workers", 2, "--proxy", 1, implementation=implementation,
                       name="b2")
    front = free_port()
    block = (doc_block("nginx").replace("PORT_FRONT", str(front))
             .replace("PORT_B1", str(b1.port)).replace("PORT_B2", str(b2.port)))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        "daemon off;\nworker_processes 1;\npid %s;\nerror_log %s info;\n"
        "events { worker_connections 256; }\n%s"
        % (tmp_path / "nginx.pid", tmp_path / "nginx-error.log", block))
    lb = Balancer([NGINX, "-c", str(conf), "-p", str(tmp_path)], tmp_path)
    stack = {"backends": [b1, b2]}
    try:
        wait_both_up(front, [b1, b2])
        stack = {"front": front, "backends": [b1, b2], "tmp": tmp_path,
                 "implementation": implementation}
        yield stack
    finally:
        lb.stop()
        for b in stack["backends"]:
            b.stop()


def test_nginx_stream_v1_true_client(nginx_stack):
    for _ in range(6):
        status, body, me = http_get(nginx_stack["front"])
        assert status == 200
        assert fields(body)["client"] == "%s:%d" % me


def refused_by(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    raise AssertionError("port %d still accepts" % port)


def test_nginx_fails_over_to_the_survivor_and_back(nginx_stack):
    """nginx retries a refused connection on the other backend
    (``proxy_next_upstream``): with one backend dead, every request is
    answered by the survivor's workers, with the true client; once the dead
    one is back on its port, nginx sends to it again after ``fail_timeout``."""
    front, (b1, b2) = nginx_stack["front"], nginx_stack["backends"]
    kill_group(b1.proc)  # the whole backend, SIGKILL
    b1.proc.wait()
    refused_by(b1.port)  # its workers are gone too (they exit a moment later)
    survivors = set(b2.worker_pids())
    for _ in range(20):
        status, body, me = http_get(front)
        assert status == 200, body
        seen = fields(body)
        assert int(seen["pid"]) in survivors
        assert seen["client"] == "%s:%d" % me
    again = ServerProcess(nginx_stack["tmp"], "--workers", 2, "--proxy", 1,
                          "--port", b1.port, implementation=nginx_stack["implementation"],
                          name="b1-again")
    nginx_stack["backends"].append(again)
    wait_both_up(front, [again, b2], timeout=30)  # fail_timeout is 2 s
