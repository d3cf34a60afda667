"""Entry point of the benchmark's child processes.

    python -m asynchat_core.bench.worker kernel SOURCE SECONDS [NAMES...]
    python -m asynchat_core.bench.worker server SOURCE KIND [streams | workers=N]
    python -m asynchat_core.bench.worker client JSON

``SOURCE`` is "asynchat_core" (build chosen by ASYNCHAT_CORE_NO_EXTENSIONS),
"stdlib", "asyncio" or "uvloop".  Servers print ``PORT <n>`` when listening
and run until stopped; a watchdog ends them anyway after a bound.  With
``workers=N`` the server runs in N processes (asynchat_core.workers; for
asyncio/uvloop, N forked loops with ``reuse_port=True``), each with its own
SO_REUSEPORT listener.
"""
import json
import os
import signal
import sys
import threading
import time

MAX_SERVER_SECONDS = float(os.environ.get("ASYNCHAT_CORE_BENCH_MAX_SECONDS", "900"))


def _die_with_parent():
    # Linux: get SIGTERM when the harness dies, so no server outlives it
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(2)


def _watchdog(seconds):
    def expire():
        time.sleep(seconds)
        os._exit(3)

    threading.Thread(target=expire, daemon=True).start()


def _ready(port):
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()


def main(argv):
    """Run one worker role (``kernel`` or ``server``) from ``argv``."""
    role = argv[0]
    if role == "kernel":
        from .impls import load_modules
        from .kernel import run_all

        source, seconds = argv[1], float(argv[2])
        asyncore, asynchat = load_modules(source)
        results = run_all(asyncore, asynchat, argv[3:] or None, seconds)
        json.dump(results, sys.stdout)
        return 0
    if role == "server":
        _die_with_parent()
        _watchdog(MAX_SERVER_SECONDS)
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        source, kind = argv[1], argv[2]
        streams = len(argv) > 3 and argv[3] == "streams"
        count = int(argv[3].split("=", 1)[1]) if len(argv) > 3 and argv[3].startswith("workers=") else 0
        if count:
            from .servers import run_asyncio_workers, run_chat_workers

            if source in ("asyncio", "uvloop"):
                run_asyncio_workers(source, kind, _ready, count)
            else:
                run_chat_workers(kind, _ready, count)
            return 0
        if source in ("asyncio", "uvloop"):
            from .servers import run_asyncio_server

            run_asyncio_server(source, kind, streams, _ready)
        else:
            from .impls import load_modules
            from .servers import run_chat_server

            asyncore, asynchat = load_modules(source)
            run_chat_server(asyncore, asynchat, kind, _ready)
        return 0
    if role == "client":
        _die_with_parent()
        from .client import run_client

        json.dump(run_client(**json.loads(argv[1])), sys.stdout)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
