"""A minimal HTTP/1.1 client for the scale-out tests (keep-alive, exact
framing, and a clear line between a retryable failure and a failed request)."""
import json
import os
import socket
import subprocess
import sys
import time

from child_procs import NEW_GROUP, env_for, kill_group

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 10.0


class Retryable(Exception):
    """The connection failed before any byte of the response: an HTTP client
    may send the request again (connection refused/reset, or closed unanswered)."""


class Failed(Exception):
    """The response was cut short: the request failed."""


def request(sock, path, close=False):
    """Send ``GET path`` on ``sock``; return ``(body, keep_alive)``."""
    req = "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, "Connection: close\r\n" if close else "")
    try:
        sock.sendall(req.encode())
    except OSError as exc:
        raise Retryable("send: %s" % exc) from None
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            if not data:
                raise Retryable("recv: %s" % exc) from None
            raise Failed("reset mid-response: %r" % data) from None
        if not chunk:
            if not data:
                raise Retryable("closed before the response")
            raise Failed("EOF mid-headers: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
                 .split(b":")[1])
    while len(body) < length:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            raise Failed("reset mid-body: %s" % exc) from None
        if not chunk:
            raise Failed("EOF mid-body")
        body += chunk
    return body.decode(), b"connection: keep-alive" in head.lower()


def get(port, path="/", retries=0):
    """One request on a new connection, sent again up to ``retries`` times
    after a ``Retryable`` failure; the body."""
    for attempt in range(retries + 1):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
                return request(s, path, close=True)[0]
        except (Retryable, ConnectionRefusedError, ConnectionResetError):
            if attempt == retries:
                raise
            time.sleep(0.01)


def fields(body):
    return dict(part.split("=", 1) for part in body.split())


class ServerProcess:
    """tests/scaleout_servers.py in its own session; ``port``, ``pid`` once ready."""

    def __init__(self, tmp_path, *args, implementation=None, name="srv"):
        self.ready = str(tmp_path / (name + ".json"))
        self.log_path = str(tmp_path / (name + ".log"))
        cmd = [sys.executable, os.path.join(HERE, "scaleout_servers.py"), "--ready", self.ready]
        cmd += [str(a) for a in args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=env_for(implementation), **NEW_GROUP)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("server did not start:\n" + self.log())
            time.sleep(0.02)
        with open(self.ready) as fh:
            info = json.load(fh)
        self.port, self.pid = info["port"], info["pid"]

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def worker_pids(self):
        with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as fh:
            return [int(p) for p in fh.read().split()]

    def fds(self):
        return sorted(os.listdir("/proc/%d/fd" % self.pid))

    def stop(self, timeout=30):
        """SIGTERM, wait; returns the exit code (the session is killed after)."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
            return self.proc.wait(timeout)
        finally:
            kill_group(self.proc)
            self.proc.wait()
