"""The built-in load client: pipelined, pre-built request blocks.

Each connection sends a block of ``depth`` requests, counts reply bytes
until the whole block is answered, and sends the block again.  Replies have
a fixed size, so requests done = reply bytes // reply size; nothing is
parsed.  It runs in its own process (``worker client``) and stops after
``duration`` seconds.  cclient.py is the same client in C, used instead
where a C compiler exists: this one costs about 1 us of CPU per pipelined
record, as much as the fastest servers it drives.
"""
import os
import select
import socket
import time

RESP_REQUESTS = {
    "ping_inline": (b"PING\r\n", b"+PONG\r\n"),
    "set": (b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n", b"+OK\r\n"),
    "get": (b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n", b"$3\r\nxxx\r\n"),
}
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: asynchat_core-bench\r\n\r\n"


def _exchange(port, request, reply_size=None):
    """Send one request on a fresh connection; return the reply bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            if reply_size is not None and len(data) >= reply_size:
                return data
            if reply_size is None and b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(body) >= length:
                    return data


def request_and_reply(kind, port, size=None, command=None):
    """Return ``(request, reply_size)`` for one request of this scenario."""
    if kind == "resp":
        request, reply = RESP_REQUESTS[command]
        if command == "get":
            _exchange(port, RESP_REQUESTS["set"][0], len(RESP_REQUESTS["set"][1]))
        return request, len(reply)
    if kind == "echo":
        return b"x" * (size - 1) + b"\n", size
    if kind == "http":
        return HTTP_REQUEST, len(_exchange(port, HTTP_REQUEST))
    if kind == "lp":  # a length-prefixed record, echoed whole
        return (size - 4).to_bytes(4, "big") + b"r" * (size - 4), size
    raise ValueError(kind)


def run_client(kind, port, conns, depth, duration, size=None, command=None, warmup=0.2):
    """Drive the server on ``port``; return counts, rate and client CPU."""
    request, reply_size = request_and_reply(kind, port, size, command)
    block = memoryview(request * depth)
    block_reply = reply_size * depth
    ep = select.epoll()
    socks = {}
    state = {}  # fd -> [bytes of the block sent, reply bytes still owed]
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        fd = sock.fileno()
        socks[fd] = sock
        state[fd] = [0, block_reply]
        ep.register(fd, select.EPOLLIN | select.EPOLLOUT)
    received = 0
    cpu0 = os.times()
    start = time.perf_counter()
    window_start = start + warmup
    deadline = window_start + duration
    mark = None
    now = start
    try:
        while now < deadline:
            for fd, events in ep.poll(0.5):
                sock = socks[fd]
                st = state[fd]
                if events & select.EPOLLIN:
                    try:
                        data = sock.recv(1 << 18)
                    except BlockingIOError:
                        data = None
                    if data is not None:
                        if not data:
                            raise ConnectionError("server closed the connection")
                        received += len(data)
                        st[1] -= len(data)
                        if st[1] <= 0 and st[0] == len(block):
                            # whole block answered: send it again
                            st[0] = 0
                            st[1] += block_reply
                            ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)
                if events & select.EPOLLOUT and st[0] < len(block):
                    try:
                        st[0] += sock.send(block[st[0]:])
                    except BlockingIOError:
                        pass
                    if st[0] == len(block):
                        ep.modify(fd, select.EPOLLIN)
            now = time.perf_counter()
            if mark is None and now >= window_start:
                mark = received
    finally:
        for sock in socks.values():
            sock.close()
        ep.close()
    cpu1 = os.times()
    window_bytes = received - (mark or 0)
    elapsed = now - (window_start if mark is not None else start)
    return {
        "requests": received // reply_size,
        "rate": (window_bytes // reply_size) / elapsed,
        "elapsed": now - start,
        "client_cpu": (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / (now - start),
        "reply_size": reply_size,
    }
