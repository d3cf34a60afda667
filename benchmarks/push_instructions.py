"""Instructions per frame of the kernel scenario's push-small, and the library's share of it.

    python benchmarks/push_instructions.py [--passes 20,60]

push-small (``python -m asynchat_core.bench --scenarios kernel``) pushes
1,024 items of 32 bytes into a channel whose socket refuses to send, then
drains them on writability.  Every implementation makes the same socket
calls per frame, as CPython does: one refused ``send`` inside ``push`` and
one accepted ``send`` in ``handle_write``.  The socket is the benchmark's
``FakeSocket``, a Python class, so a part of every frame's cost is that
mock's own code, the same for every implementation.

This script counts, under ``valgrind --tool=callgrind`` (R1 and R2 passes;
the difference over the extra frames is one frame's cost):

- each implementation's push-small frame (the compiled and Python builds,
  the stdlib's modules);
- ``mock``: the two ``FakeSocket.send`` calls of a frame (the refused one
  caught) called from a Python loop and nothing else;

and prints each implementation's total and its own share, total less the
mock's.  Needs valgrind; Linux only.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from linechat import callgrind_script_total  # noqa: E402

FRAMES = 1024  # per pass, as the kernel scenario's push-small
SOURCES = {"cython": "asynchat_core", "python": "asynchat_core", "stdlib": "stdlib"}


def child(case, passes):
    if case == "mock":
        from asynchat_core.bench.kernel import FakeSocket

        fake = FakeSocket()
        send = fake.send
        data = b"y" * 32
        for _ in range(passes):
            for _ in range(FRAMES):
                fake.blocked = True
                try:
                    send(data)
                except BlockingIOError:
                    pass
                fake.blocked = False
                send(data)
        return
    from asynchat_core.bench.impls import load_modules
    from asynchat_core.bench.kernel import make_workloads

    asyncore, asynchat = load_modules(SOURCES[case])
    run = make_workloads(asyncore, asynchat)["push-small"][0]()
    for _ in range(passes):
        run()


def total(case, passes):
    return callgrind_script_total(os.path.abspath(__file__), ["--child", case, passes],
                                  python_build=(case == "python"))


def per_frame(case, low, high):
    return (total(case, high) - total(case, low)) / float(FRAMES * (high - low))


def main(argv):
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", default="20,60")
    p.add_argument("--cases", default="cython,python,stdlib")
    args = p.parse_args(argv)
    low, high = (int(x) for x in args.passes.split(","))
    mock = per_frame("mock", low, high)
    rows = [(case, per_frame(case, low, high)) for case in args.cases.split(",")]
    stdlib_own = dict(rows).get("stdlib", 0) - mock
    print("Python %d.%d.%d, push-small, instructions per frame (mock socket alone: %.0f)\n"
          % (sys.version_info[:3] + (mock,)))
    print("| implementation | total | own (total - mock) | own / stdlib's own |")
    print("|---|---:|---:|---:|")
    for case, value in rows:
        ratio = "%.2fx" % ((value - mock) / stdlib_own) if stdlib_own > 0 else ""
        print("| %s | %.0f | %.0f | %s |" % (case, value, value - mock, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
