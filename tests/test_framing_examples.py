"""The framer examples (examples/*.py, docs/framing.md) served to real
clients, in a child process per build: redis-cli and redis-benchmark
(Debian's redis-tools) where installed, else a socket client speaking RESP.
"""
import os
import shutil
import socket
import subprocess
import sys

import pytest

import impls
from child_procs import NEW_GROUP, env_for, kill_group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)
import length_rpc_server  # noqa: E402  (its client; the server runs in a child)


def serve(script, build):
    """Start ``examples/script`` on a free port; (process, port)."""
    env = env_for(build, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, script), "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            **NEW_GROUP)
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        kill_group(proc)
        proc.wait()
        raise AssertionError("%s did not start: %r %r" % (script, line, proc.stdout.read()))
    return proc, int(line.rsplit(":", 1)[1])


@pytest.fixture(params=impls.params(impls.OURS))
def build(request):
    return request.param


@pytest.fixture
def kv_port(build):
    proc, port = serve("resp_kv_server.py", build)
    yield port
    kill_group(proc)
    proc.wait()
    proc.stdout.close()


def resp_call(sock_file, sock, *args):
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return sock_file.readline()


def test_resp_kv_server_with_a_socket_client(kv_port):
    with socket.create_connection(("127.0.0.1", kv_port), timeout=30) as sock:
        f = sock.makefile("rb")
        assert resp_call(f, sock, b"SET", b"k", b"v" * 3) == b"+OK\r\n"
        assert resp_call(f, sock, b"GET", b"k") == b"$3\r\n"
        assert f.readline() == b"vvv\r\n"
        assert resp_call(f, sock, b"GET", b"missing") == b"$-1\r\n"
        sock.sendall(b"PING\r\n")  # inline
        assert f.readline() == b"+PONG\r\n"
        # pipelined: 100 INCRs in one write, 100 replies in order
        sock.sendall(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n" * 100)
        assert [f.readline() for _ in range(100)] == [b":%d\r\n" % i for i in range(1, 101)]
        # a malformed request: the server closes the connection
        sock.sendall(b"*1\r\n$-7\r\n")
        assert f.read() == b""


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")
def test_resp_kv_server_with_redis_cli(kv_port):
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(kv_port)] + list(args),
                              capture_output=True, timeout=30, check=True).stdout

    assert cli("set", "greeting", "hello world") == b"OK\n"
    assert cli("get", "greeting") == b"hello world\n"
    assert cli("exists", "greeting", "nope") == b"1\n"
    assert cli("del", "greeting") == b"1\n"
    assert cli("nosuchcommand").startswith(b"ERR unknown command")


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark not installed")
def test_resp_kv_server_with_redis_benchmark(kv_port):
    # a small, bounded load: correctness of pipelined replies, not speed
    out = subprocess.run(["redis-benchmark", "-p", str(kv_port), "-t", "set,get", "-n", "2000",
                          "-P", "16", "-c", "4", "-q"], capture_output=True, timeout=60,
                         check=True).stdout
    assert b"SET: " in out and b"GET: " in out


def test_length_rpc_server(build):
    proc, port = serve("length_rpc_server.py", build)
    try:
        replies = length_rpc_server.client(("127.0.0.1", port), [
            ("add", [2, 3]), ("upper", ["abc"]), ("echo", [1, "x" * 100000]), ("nope", []),
        ])
        assert replies[0] == {"id": 0, "result": 5}
        assert replies[1] == {"id": 1, "result": "ABC"}
        assert replies[2] == {"id": 2, "result": [1, "x" * 100000]}
        assert replies[3]["id"] == 3 and replies[3]["error"].startswith("KeyError")
        # a frame over the server's max_size (1 MiB): the connection is closed
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"\x7f\xff\xff\xff")
            assert sock.recv(10) == b""
    finally:
        kill_group(proc)
        proc.wait()
        proc.stdout.close()
