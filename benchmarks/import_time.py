"""Import time of asynchat_core against the stdlib's asyncore/asynchat.

    python benchmarks/import_time.py [--runs 40] [--impls stdlib,cython,python]
                                     [--importtime] [--baseline DIR]

Each run is a fresh interpreter that times its own import statement
(``time.perf_counter`` around it), the implementations taking turns run by
run so that load from elsewhere hits them alike; reported are the median
and the minimum of the import, and the median wall time of the whole
process (interpreter start-up included, what ``hyperfine`` would show):

* ``stdlib``: ``import asynchat, asyncore`` (CPython 3.11's modules; the
  ``pyasynchat``/``pyasyncore`` copies on 3.12+);
* ``cython`` / ``python``: ``from asynchat_core import asynchat, asyncore``
  with the compiled build / the Python build.

Bytecode caches are written to a temporary ``PYTHONPYCACHEPREFIX`` (and a
warm-up run fills it), so the figures do not depend on whether the
checkout has ``__pycache__`` directories or the environment sets
``PYTHONDONTWRITEBYTECODE``.  ``--importtime`` also prints one run's
``python -X importtime`` tree per implementation (modules over 100 us).
``--baseline DIR`` adds ``cython@base`` and ``python@base``: the same
imports from another checkout (built in place, e.g. a worktree of the
commit before a change), taking turns with the others: before and after
figures from one run.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATEMENTS = {
    "stdlib": "import asynchat, asyncore",
    "cython": "from asynchat_core import asynchat, asyncore",
    "python": "from asynchat_core import asynchat, asyncore",
}
TIMED = ("import time; _t = time.perf_counter()\n{stmt}\n"
         "print(time.perf_counter() - _t)\n"
         "import asynchat_core, sys; assert 'asynchat_core' not in {stmt!r} or "
         "asynchat_core.IMPLEMENTATION == {impl!r}, asynchat_core.IMPLEMENTATION")


BASELINE = None  # --baseline: the checkout the @base implementations import


def _root(impl):
    return BASELINE if impl.endswith("@base") else ROOT


def _env(impl, cache):
    root = _root(impl)
    impl = impl.split("@")[0]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if impl == "python":
        env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    return env


def _cmd(impl, extra=()):
    impl = impl.split("@")[0]
    code = TIMED.format(stmt=STATEMENTS[impl], impl=impl)
    # the stdlib's modules warn that they are deprecated (3.11): silenced alike for all
    return [sys.executable, "-W", "ignore::DeprecationWarning", *extra, "-c", code]


def run_once(impl, cache):
    """(import seconds, process wall seconds) of one fresh interpreter."""
    start = time.perf_counter()
    # run in the checkout: "-c" puts the current directory first on sys.path
    out = subprocess.run(_cmd(impl), env=_env(impl, cache), check=True, cwd=_root(impl),
                         stdout=subprocess.PIPE, text=True).stdout
    wall = time.perf_counter() - start
    return float(out.split()[0]), wall


def importtime_tree(impl, cache, floor_us=100):
    err = subprocess.run(_cmd(impl, ["-X", "importtime"]), env=_env(impl, cache), check=True,
                         cwd=_root(impl),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    lines = err.splitlines()
    # from the first module the statement imports (after site's own imports)
    start = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| site")) + 1
    keep = []
    for line in lines[start:]:
        cells = line.split("|")
        if len(cells) == 3 and cells[1].strip().isdigit() and int(cells[1]) >= floor_us:
            keep.append(line)
    return "\n".join(keep)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--impls", default="stdlib,cython,python")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also time cython@base and python@base, imported from DIR")
    args = parser.parse_args(argv)
    impls = args.impls.split(",")
    if args.baseline:
        global BASELINE
        BASELINE = os.path.abspath(args.baseline)
        impls += ["cython@base", "python@base"]
    imports = {impl: [] for impl in impls}
    walls = {impl: [] for impl in impls}
    with tempfile.TemporaryDirectory() as cache:
        for impl in impls:
            run_once(impl, cache)  # warm-up: writes the bytecode caches
        for _ in range(args.runs):
            for impl in impls:
                imp, wall = run_once(impl, cache)
                imports[impl].append(imp)
                walls[impl].append(wall)
        trees = {impl: importtime_tree(impl, cache) for impl in impls} if args.importtime else {}
    print("Python %s, %d runs each, interleaved" % (sys.version.split()[0], args.runs))
    print()
    print("| import | median ms | min ms | / stdlib (median) | process wall ms (median) |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(imports["stdlib"]) if "stdlib" in imports else None
    for impl in impls:
        med = statistics.median(imports[impl])
        print("| %s `%s` | %.2f | %.2f | %s | %.1f |" % (
            impl, STATEMENTS[impl.split("@")[0]], med * 1e3, min(imports[impl]) * 1e3,
            "%.2fx" % (med / base) if base else "", statistics.median(walls[impl]) * 1e3))
    for impl, tree in trees.items():
        print("\n%s, python -X importtime (self us | cumulative us | module):\n%s" % (impl, tree))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
