"""A length-prefixed RPC server on asynchat_core framers.

    python examples/length_rpc_server.py [--port 7000]

Each request and each reply is a 4-byte big-endian length followed by a
JSON object: ``{"id": 1, "method": "add", "params": [2, 3]}`` is answered
``{"id": 1, "result": 5}`` (or ``{"id": 1, "error": "..."}``).  The
kernel hands each whole request to ``found_message``; ``push_frame``
writes the header and the reply in one send.  ``client()`` below is a
blocking client for it.
"""
import argparse
import json
import socket
import struct

from asynchat_core import asynchat, asyncore
from asynchat_core.framing import LengthPrefix

FRAMER = LengthPrefix(header=4, byteorder="big", max_size=1024 * 1024)

METHODS = {
    "add": lambda a, b: a + b,
    "upper": lambda s: s.upper(),
    "echo": lambda *args: list(args),
}


class RPCHandler(asynchat.async_chat):
    """One client connection: one reply per request, in order."""

    def __init__(self, sock):
        super().__init__(sock)
        self.set_terminator(FRAMER)

    def found_message(self, payload):
        try:
            request = json.loads(payload)
            call_id = request.get("id")
        except (ValueError, AttributeError):
            self.push_frame(b'{"id": null, "error": "bad request"}')
            return
        try:
            result = METHODS[request["method"]](*request.get("params", []))
            reply = {"id": call_id, "result": result}
        except Exception as exc:  # the caller's error, reported to the caller
            reply = {"id": call_id, "error": "%s: %s" % (type(exc).__name__, exc)}
        self.push_frame(json.dumps(reply).encode())


class RPCServer(asyncore.dispatcher):
    def __init__(self, host="127.0.0.1", port=7000):
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(128)

    def handle_accepted(self, sock, addr):
        RPCHandler(sock)


def client(address, calls):
    """Send ``calls`` (method, params) pipelined; return the replies."""
    with socket.create_connection(address) as sock:
        out = b""
        for n, (method, params) in enumerate(calls):
            body = json.dumps({"id": n, "method": method, "params": params}).encode()
            out += struct.pack(">I", len(body)) + body
        sock.sendall(out)
        replies, buf = [], b""
        while len(replies) < len(calls):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed")
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">I", buf)[0]:
                size = struct.unpack_from(">I", buf)[0]
                replies.append(json.loads(buf[4:4 + size]))
                buf = buf[4 + size:]
        return replies


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000, help="0: any free port")
    args = parser.parse_args(argv)
    server = RPCServer(args.host, args.port)
    print("listening on %s:%d" % server.socket.getsockname()[:2], flush=True)
    asyncore.loop(timeout=1.0)


if __name__ == "__main__":
    main()
