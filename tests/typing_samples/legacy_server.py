"""A legacy-style line server and client, fully annotated.

Written the way asyncore/asynchat code was written before 3.12, with the
only change being where the modules come from.  ``mypy --strict`` checks it
against the package's stubs (tests/test_typing.py), and ``run_exchange``
really runs it over loopback so the sample cannot drift from the API.
"""
from typing import Dict, List, Optional, Tuple

import socket

from asynchat_core import asynchat, asyncore

ChannelMap = Dict[int, asyncore.dispatcher]


class LineHandler(asynchat.async_chat):
    """Answers each CRLF-terminated line with the line upper-cased."""

    def __init__(self, sock: socket.socket, server: "LineServer") -> None:
        asynchat.async_chat.__init__(self, sock, map=server.channel_map)
        self.server = server
        self.buffer: List[bytes] = []
        self.set_terminator(b"\r\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.buffer.append(data)

    def found_terminator(self) -> None:
        line = b"".join(self.buffer)
        self.buffer = []
        self.server.lines_seen += 1
        if line == b"QUIT":
            self.push(b"BYE\r\n")
            self.close_when_done()
        else:
            self.push(line.upper() + b"\r\n")


class LineServer(asyncore.dispatcher):
    """Listens on loopback and hands every connection to a LineHandler."""

    def __init__(self, channel_map: ChannelMap) -> None:
        asyncore.dispatcher.__init__(self, map=channel_map)
        self.channel_map = channel_map
        self.lines_seen = 0
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(5)

    @property
    def port(self) -> int:
        port: int = self.socket.getsockname()[1]
        return port

    def handle_accepted(self, sock: socket.socket, addr: Tuple[str, int]) -> None:
        LineHandler(sock, self)


class LineClient(asynchat.async_chat):
    """Sends its lines, then QUIT, and records the replies."""

    def __init__(self, port: int, lines: List[bytes], channel_map: ChannelMap) -> None:
        asynchat.async_chat.__init__(self, map=channel_map)
        self.replies: List[bytes] = []
        self.partial = b""
        self.error: Optional[str] = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_terminator(b"\r\n")
        self.connect(("127.0.0.1", port))
        for line in lines:
            self.push(line + b"\r\n")
        self.push_with_producer(asynchat.simple_producer(b"QUIT\r\n", buffer_size=2))

    def collect_incoming_data(self, data: bytes) -> None:
        self.partial += data

    def found_terminator(self) -> None:
        self.replies.append(self.partial)
        self.partial = b""
        if self.replies[-1] == b"BYE":
            self.close()

    def handle_error(self) -> None:
        self.error = repr(asyncore.compact_traceback())
        self.close()


def run_exchange(lines: List[bytes], passes: int = 500) -> Tuple[List[bytes], int]:
    """Serve one client on loopback; return its replies and the server's count."""
    channel_map: ChannelMap = {}
    server = LineServer(channel_map)
    client = LineClient(server.port, lines, channel_map)
    try:
        # one pass at a time until only the listener is left (a single
        # loop(count=passes) always ran all 500 passes, 25 s of 0.05 s waits)
        while len(channel_map) > 1 and passes > 0:
            asyncore.loop(timeout=0.05, map=channel_map, count=1)
            passes -= 1
    finally:
        asyncore.close_all(map=channel_map)
    if client.error is not None:
        raise RuntimeError(client.error)
    return client.replies, server.lines_seen


if __name__ == "__main__":
    print(run_exchange([b"hello", b"world"]))
