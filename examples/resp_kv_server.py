"""A Redis-compatible key-value server on asynchat_core framers.

    python examples/resp_kv_server.py [--port 6380]
    redis-cli -p 6380 set greeting hello
    redis-benchmark -p 6380 -t set,get -P 16 -q

The kernel cuts each request (an array of bulk strings, or an inline
command) into a list of bytes and hands every request of a read to
``found_messages`` at once; the replies are encoded with
``framing.encode_resp`` and pushed in one piece.  Commands: PING, ECHO,
SET, GET, DEL, EXISTS, INCR, DBSIZE, FLUSHALL, COMMAND, QUIT.
"""
import argparse
import sys

from asynchat_core import asynchat, asyncore
from asynchat_core.framing import RespError, RespRequests, RespSimple, encode_resp

OK = encode_resp(RespSimple("OK"))
PONG = encode_resp(RespSimple("PONG"))
NIL = encode_resp(None)


class KVHandler(asynchat.async_chat):
    """One client connection."""

    ac_max_frame_size = 512 * 1024 * 1024  # Redis's proto-max-bulk-len

    def __init__(self, sock, store):
        super().__init__(sock)
        self.store = store
        self.set_terminator(RespRequests())

    def found_messages(self, requests):
        replies = []
        for request in requests:
            reply = self.execute(request)
            if reply is None:  # QUIT
                self.push(b"".join(replies) + OK)
                self.close_when_done()
                return
            replies.append(reply)
        self.push(b"".join(replies))

    def execute(self, request):
        command = request[0].upper()
        args = request[1:]
        store = self.store
        try:
            if command == b"GET" and len(args) == 1:
                value = store.get(args[0])
                return NIL if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
            if command == b"SET" and len(args) >= 2:
                store[args[0]] = args[1]
                return OK
            if command == b"PING":
                return PONG if not args else encode_resp(args[0])
            if command == b"ECHO" and len(args) == 1:
                return encode_resp(args[0])
            if command == b"DEL":
                return encode_resp(sum(store.pop(key, None) is not None for key in args))
            if command == b"EXISTS":
                return encode_resp(sum(key in store for key in args))
            if command == b"INCR" and len(args) == 1:
                value = int(store.get(args[0], b"0")) + 1
                store[args[0]] = b"%d" % value
                return encode_resp(value)
            if command == b"DBSIZE":
                return encode_resp(len(store))
            if command == b"FLUSHALL":
                store.clear()
                return OK
            if command == b"COMMAND":  # redis-cli asks at start
                return encode_resp([])
            if command == b"QUIT":
                return None
        except ValueError:
            return encode_resp(RespError("ERR value is not an integer or out of range"))
        return encode_resp(RespError("ERR unknown command or wrong number of arguments for '%s'"
                                     % command.decode("latin-1")))

    def handle_error(self):
        # a malformed request (framing.FrameError) or a bug: log, then the
        # channel is closed
        self.log_info("closing %r: %s" % (self.addr, sys.exc_info()[1]), "warning")
        self.close()


class KVServer(asyncore.dispatcher):
    def __init__(self, host="127.0.0.1", port=6380):
        super().__init__()
        self.store = {}
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(512)

    def handle_accepted(self, sock, addr):
        KVHandler(sock, self.store)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6380, help="0: any free port")
    args = parser.parse_args(argv)
    server = KVServer(args.host, args.port)
    print("listening on %s:%d" % server.socket.getsockname()[:2], flush=True)
    asyncore.loop(timeout=1.0)


if __name__ == "__main__":
    main()
