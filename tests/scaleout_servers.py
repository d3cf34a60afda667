"""A small HTTP/1.1 keep-alive server run by asynchat_core.workers, for
tests/test_workers.py and tests/test_haproxy.py (run as a script).

Every response body says who answered and whom it saw:
``pid=<worker pid> worker=<slot> client=<host>:<port> proxied=<0|1>``.
``GET /slow`` answers after 0.3 s (a request in flight during a shutdown);
``GET /health`` is HAProxy's check.  With ``--proxy 2`` the listener takes a
PROXY protocol v2 header from 127.0.0.0/8 (``ProxyListenerMixin``).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from asynchat_core import asynchat, asyncore, proxy, workers  # noqa: E402

CHANNELS = set()


class HTTPHandler(asynchat.async_chat):
    def __init__(self, sock, addr):
        asynchat.async_chat.__init__(self, sock)
        self.client = addr
        self.set_terminator(b"\r\n\r\n")
        self.buf = []
        self.busy = False
        self.timer = None
        CHANNELS.add(self)

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        head = b"".join(self.buf).decode("latin-1")
        self.buf = []
        line = head.split("\r\n", 1)[0].lstrip("\r\n")
        path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        keep = "connection: close" not in head.lower()
        self.busy = True
        if path == "/slow":
            self.timer = asyncore.call_later(0.3, self.respond, path, keep)
        else:
            self.respond(path, keep)

    def respond(self, path, keep):
        self.timer = None
        keep = keep and not workers.stopping()
        body = ("pid=%d worker=%s client=%s:%d proxied=%d path=%s\n" % (
            os.getpid(), workers.worker_index(), self.client[0], self.client[1],
            int(proxy.header_of(self) is not None), path)).encode()
        self.push(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
                  % (len(body), b"keep-alive" if keep else b"close") + body)
        self.busy = False
        if not keep:
            self.close_when_done()

    def handle_close(self):
        self.close()

    def close(self):
        CHANNELS.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        asynchat.async_chat.close(self)


def close_idle():
    # graceful stop: an idle keep-alive connection is closed now; a busy
    # one answers with "Connection: close" and closes after
    for channel in list(CHANNELS):
        if not channel.busy and not channel.producer_fifo and not channel.buf:
            channel.close()


class Listener(asyncore.dispatcher):
    def handle_accepted(self, sock, addr):
        HTTPHandler(sock, addr)


class ProxyListener(proxy.ProxyListenerMixin, Listener):
    proxy_versions = proxy.V2
    proxy_allow = ["127.0.0.0/8"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ready", required=True, help="file to write the address to")
    ap.add_argument("--proxy", type=int, default=0, metavar="VERSIONS",
                    help="take a PROXY header: 1 (v1), 2 (v2) or 3 (either)")
    ap.add_argument("--no-reuse-port", action="store_true")
    ap.add_argument("--crash", action="store_true", help="every worker fails at start")
    ap.add_argument("--shutdown-timeout", type=float, default=5.0)
    args = ap.parse_args()

    def factory(sock):
        if args.crash:
            raise RuntimeError("crashing on purpose")
        workers.on_stop(close_idle)
        listener = ProxyListener() if args.proxy else Listener()
        if args.proxy:
            listener.proxy_versions = args.proxy
        return workers.listen_on(listener, sock)

    def ready(address):
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"port": address[1], "pid": os.getpid()}, fh)
        os.rename(tmp, args.ready)

    return workers.serve(factory, ("127.0.0.1", args.port), args.workers,
                         reuse_port=False if args.no_reuse_port else None,
                         shutdown_timeout=args.shutdown_timeout, ready=ready, backoff=0.1,
                         max_backoff=2.0)


if __name__ == "__main__":
    sys.exit(main())
