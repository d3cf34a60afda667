"""Instructions per message of the framers, in process (issue 19).

    python benchmarks/framing_instructions.py [--reads 2000,6000] [--block 16]

Each case feeds the same reads (``--block`` messages each, 16 by default;
``--block 1``: an unpipelined request, the kernels' per-read work included)
to a parser with a hook that only counts, under ``valgrind --tool=callgrind``, twice (R1 and R2
reads); (total(R2) - total(R1)) / (block * (R2 - R1)) is the user-space cost
of one message: parsing, the hook call, nothing of the socket.

Cases: the framers of both builds (``found_messages`` per read and
``found_message`` per message); the classic asynchat_core RESP and
length-prefixed handlers of the benchmark (``set_terminator`` per frame);
hiredis's ``Reader`` (``feed`` + ``gets`` per message, what a uvloop
server calls); the benchmark's Python RESP parser (``parse_resp``); a
uvloop-style ``struct.unpack_from`` loop for length-prefixed records.
Needs valgrind; Linux only.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from linechat import callgrind_script_total  # noqa: E402

RESP_SET = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"
LP_100 = (100).to_bytes(4, "big") + b"r" * 100
BLOCK = int(os.environ.get("FRAMING_BLOCK", "16"))  # messages per read (--block)

CASES = [
    "cython-framer-resp-many", "cython-framer-resp-one", "python-framer-resp-many",
    "cython-classic-resp", "hiredis-resp", "python-parse-resp",
    "cython-framer-lp-many", "cython-framer-lp-one", "python-framer-lp-many",
    "cython-classic-lp", "unpack-from-lp",
]


def child(case, reads):
    """Run ``case`` for ``reads`` reads (in the callgrind child)."""
    build, _, rest = case.partition("-")
    if build == "python":
        os.environ["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    from asynchat_core import asynchat, asyncore, framing
    from asynchat_core.bench import servers

    block = (RESP_SET if "resp" in case else LP_100) * BLOCK
    if rest.startswith("framer") or rest.startswith("classic"):
        if rest.startswith("framer"):
            many = rest.endswith("many")

            class Chan(asynchat.async_chat):
                n = 0
                if many:
                    def found_messages(self, messages):
                        self.n += len(messages)
                else:
                    def found_message(self, message):
                        self.n += 1

            chan = Chan(sock=None, map={})
            chan.set_terminator(framing.RespRequests() if "resp" in case
                                else framing.LengthPrefix(4))
        else:
            classes, _ = servers.make_chat_servers(asyncore, asynchat)
            classes.update(servers.make_framing_channels(asyncore, asynchat))
            cls = classes["resp" if "resp" in case else "lp"]
            chan = cls(None, {}, map={})
            chan.push = lambda data: None  # the parsing only
        kernels = asynchat._kernels
        inbuf = chan._ac_in
        for _ in range(reads):
            kernels.chat_feed(chan, inbuf, block, kernels.terminator_mode(chan))
    elif case == "hiredis-resp":
        import hiredis

        reader = hiredis.Reader()
        n = 0
        for _ in range(reads):
            reader.feed(block)
            args = reader.gets()
            while args is not False:
                n += 1
                args = reader.gets()
    elif case == "python-parse-resp":
        for _ in range(reads):
            servers.parse_resp(block, 0)
    elif case == "unpack-from-lp":
        import struct

        unpack = struct.Struct(">I").unpack_from
        for _ in range(reads):
            pos, end, out = 0, len(block), []
            while end - pos >= 4:
                (size,) = unpack(block, pos)
                if end - pos - 4 < size:
                    break
                out.append(block[pos + 4:pos + 4 + size])
                pos += 4 + size


def total(case, reads):
    # (the child picks its build from the case's name)
    return callgrind_script_total(os.path.abspath(__file__), ["--child", case, reads],
                                  python_build=False)


def main(argv):
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", default="2000,6000")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--block", type=int, default=BLOCK, help="messages per read")
    args = p.parse_args(argv)
    os.environ["FRAMING_BLOCK"] = str(args.block)  # for the children
    r1, r2 = (int(x) for x in args.reads.split(","))
    print("%-26s %10s" % ("case", "instr/msg"))
    for case in args.cases.split(","):
        per = (total(case, r2) - total(case, r1)) / float(args.block * (r2 - r1))
        print("%-26s %10.0f" % (case, per), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
