"""The benchmark's command line: parsing and every check made before any work.

Each bad argument ends the program with one line on stderr and exit status 2
(``ArgumentParser.error``), before a server or a measurement has started:
unknown names, sizes and counts that are not positive whole numbers, output
files that could not be written, a ``--stdlib-python`` that does not run,
``--plot`` without matplotlib, ``--markdown`` on a checkout with uncommitted
changes.
"""
import argparse
import math
import os
import subprocess
import sys
from typing import List

from .impls import RENAMED_IMPLS

SCENARIO_NAMES = ("kernel", "resp", "echo", "http")
KERNEL_WORKLOADS = ("lines32-64k", "lines32-4k", "records100", "resp-mix", "push-small", "push-large")
RESP_TESTS = ("ping_inline", "set", "get")
ECHO_IMPLS = ("cython", "baseline", "python", "stdlib", "asyncio", "asyncio-streams", "uvloop",
              "uvloop-streams")
IMPL_NAMES = ECHO_IMPLS + ("redis-server",)

MAX_MESSAGE = 16 << 20
MAX_CONNECTIONS = 10000
MAX_ROUNDS = 100
MAX_SECONDS = 3600.0

# Defaults: 3 interleaved rounds, so every ratio has a spread, in about three
# minutes on 2 cores with redis-benchmark and wrk installed.
DEFAULT_ROUNDS = 3
DEFAULT_DURATION = 0.5
DEFAULT_KERNEL_SECONDS = 0.25


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block)."""

    #: the old implementation names given to --impls (each gets a note)
    renamed_impls: List[str]

    def error(self, message):
        """Print ``prog: error: message`` on one line and exit with status 2."""
        self.exit(2, "%s: error: %s (--help lists the options)\n"
                  % (self.prog, " ".join(message.split())))


def _number(kind, low, high, low_ok=False):
    noun = "number" if kind is float else "whole number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a %s" % (text, noun)) from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError("%r is not a finite number" % text)
        if value < low or (value == low and not low_ok):
            raise argparse.ArgumentTypeError(
                "must be %s %g, got %s" % ("at least" if low_ok else "more than", low, text))
        if value > high:
            raise argparse.ArgumentTypeError("must be at most %g, got %s" % (high, text))
        return value
    return parse


class _Names:
    """Parses comma-separated names from ``choices`` (an argparse ``type``).

    ``renamed`` maps old names to current ones: an old name is accepted,
    replaced, and remembered in ``old_names_used`` (``parse_args`` prints a
    note for each once the whole command line has been accepted).
    """

    def __init__(self, choices, what, renamed=None):
        self.choices = choices
        self.what = what
        self.renamed = renamed or {}
        self.old_names_used = []

    def __call__(self, text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        for i, name in enumerate(names):
            if name in self.renamed:
                self.old_names_used.append(name)
                names[i] = name = self.renamed[name]
            if name not in self.choices:
                raise argparse.ArgumentTypeError("unknown %s %r (choose from %s)" % (
                    self.what, name, ",".join(self.choices)))
        return names


def _sizes(text):
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise argparse.ArgumentTypeError(
                "%r is not a whole number of bytes (write 1024, not 1k)" % item)
        size = int(item)
        if not 1 <= size <= MAX_MESSAGE:
            raise argparse.ArgumentTypeError(
                "message size %d is out of range (1 to %d bytes)" % (size, MAX_MESSAGE))
        sizes.append(size)
    if not sizes:
        raise argparse.ArgumentTypeError("no message size given")
    return sizes


def version_text():
    """``asynchat_core X.Y.Z (cython build, Python 3.11.7)``: what --version prints."""
    import asynchat_core

    return "asynchat_core %s (%s build, Python %s)" % (
        asynchat_core.__version__, asynchat_core.IMPLEMENTATION, sys.version.split()[0])


def build_parser(scenarios):
    """The parser; ``scenarios`` are the names the scenario table runs."""
    p = Parser(
        prog="python -m asynchat_core.bench",
        description="Benchmark asynchat_core against the stdlib asynchat, asyncio, uvloop and "
                    "redis-server.  The defaults run %d interleaved rounds of every case and take "
                    "about three minutes on 2 cores." % DEFAULT_ROUNDS,
    )
    p.add_argument("--version", action="version", version=version_text())
    p.add_argument("--scenarios", type=_Names(tuple(scenarios), "scenario"),
                   default=list(SCENARIO_NAMES),
                   help="comma-separated subset of %s (default: %s); 'kernel' runs the chat "
                        "code in process, without sockets"
                        % (",".join(scenarios), ",".join(SCENARIO_NAMES)))
    impls = _Names(IMPL_NAMES, "implementation", RENAMED_IMPLS)
    p.renamed_impls = impls.old_names_used
    p.add_argument("--impls", type=impls, default=[],
                   help="comma-separated implementations to run (default: every one found): "
                        "%s (cython: the compiled build, python: the Python build; asyncio and "
                        "uvloop bring their -streams variants; 'pure' is the old name of "
                        "python)" % ",".join(IMPL_NAMES))
    p.add_argument("--rounds", type=_number(int, 1, MAX_ROUNDS, low_ok=True),
                   default=DEFAULT_ROUNDS,
                   help="measure every case this many times per implementation, interleaved; "
                        "tables show the median and the min-max range (default %d)"
                        % DEFAULT_ROUNDS)
    p.add_argument("--duration", type=_number(float, 0, MAX_SECONDS), default=DEFAULT_DURATION,
                   help="seconds per socket measurement (default %g)" % DEFAULT_DURATION)
    p.add_argument("--kernel-seconds", type=_number(float, 0, MAX_SECONDS),
                   default=DEFAULT_KERNEL_SECONDS,
                   help="kernel scenario: seconds per workload, implementation and round "
                        "(default %g)" % DEFAULT_KERNEL_SECONDS)
    p.add_argument("--kernel-workloads", type=_Names(KERNEL_WORKLOADS, "kernel workload"),
                   default=list(KERNEL_WORKLOADS),
                   help="kernel scenario: comma-separated workloads for the chat code "
                        "(default: all of %s)" % ",".join(KERNEL_WORKLOADS))
    p.add_argument("--sizes", type=_sizes, default=[1024, 10240],
                   help="line echo message sizes in bytes (default 1024,10240; vmbench adds "
                        "102400)")
    p.add_argument("--clients", type=_number(int, 1, MAX_CONNECTIONS, low_ok=True), default=50,
                   help="connections for RESP and HTTP (default 50)")
    p.add_argument("--workers", type=_number(int, 1, 256, low_ok=True),
                   default=os.cpu_count() or 1,
                   help="processes for the N-worker servers of the workers scenario "
                        "(default: one per core, %d here)" % (os.cpu_count() or 1))
    p.add_argument("--echo-clients", type=_number(int, 1, MAX_CONNECTIONS, low_ok=True),
                   default=10, help="connections for echo (default 10)")
    p.add_argument("--echo-depth", type=_number(int, 0, 100000, low_ok=True), default=0,
                   help="echo messages in flight per connection (default 0: blocks of about "
                        "32 KiB, so 32 for 1 KiB, 3 for 10 KiB, 1 for 100 KiB; 1 is vmbench's "
                        "strict ping-pong)")
    p.add_argument("--pipeline", type=_number(int, 1, 100000, low_ok=True), default=16,
                   help="RESP pipelined depth (default 16)")
    p.add_argument("--resp-tests", type=_Names(RESP_TESTS, "RESP test"),
                   default=list(RESP_TESTS),
                   help="redis-benchmark tests (default %s)" % ",".join(RESP_TESTS))
    p.add_argument("--builtin-client", action="store_true",
                   help="use the built-in load client even where redis-benchmark/wrk exist")
    p.add_argument("--python-client", action="store_true",
                   help="the built-in load client in Python, even where a C compiler builds "
                        "the C one (which a fast server needs: the Python one spends about "
                        "1 us of CPU per pipelined record)")
    p.add_argument("--stdlib-python", metavar="PYTHON", default=None,
                   help="interpreter whose asyncore/asynchat is the baseline (default: this "
                        "one, or python3.11 on 3.12+ without pyasynchat)")
    p.add_argument("--baseline", metavar="DIR", default=None,
                   help="also measure asynchat_core from the checkout DIR (compiled build "
                        "made in place), e.g. an earlier revision, side by side as 'baseline'")
    p.add_argument("--goals", action="store_true",
                   help="also print the project's own performance goals and whether this run "
                        "meets them")
    p.add_argument("--json", metavar="FILE", help="write the raw figures as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the ratios to the stdlib (needs matplotlib)")
    p.add_argument("--markdown", metavar="FILE",
                   help="write this Python's section of FILE (BENCHMARKS.md), keeping the "
                        "sections of other Python versions; refuses a checkout with "
                        "uncommitted changes")
    p.add_argument("--allow-dirty", action="store_true",
                   help="with --markdown: accept uncommitted changes (the file says so)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def checkout_root():
    """The directory holding the imported ``asynchat_core`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_state(exclude=()):
    """``(commit, dirty)`` of the checkout, or ``(None, None)`` outside git.

    ``dirty`` counts changes to tracked files only, except the paths in
    ``exclude`` (the report being regenerated).
    """
    root = checkout_root()
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        spec = ["."]
        for path in exclude:
            rel = os.path.relpath(os.path.abspath(path), root)
            if not rel.startswith(os.pardir):  # a path outside the checkout changes nothing
                spec.append(":(exclude)" + rel)
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--"] + spec,
            capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if status.returncode != 0:
        return head.stdout.strip(), None
    return head.stdout.strip(), bool(status.stdout.strip())


def _check_output(parser, option, path):
    if os.path.isdir(path):
        parser.error("%s %s: is a directory" % (option, path))
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        parser.error("%s %s: cannot write there (%s)" % (option, path, exc.strerror or exc))
    if not existed:
        os.unlink(path)


def _check_python(parser, python):
    if not os.path.exists(python):
        parser.error("--stdlib-python %s: no such file" % python)
    if os.path.isdir(python) or not os.access(python, os.X_OK):
        parser.error("--stdlib-python %s: not an executable file" % python)
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[0])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        parser.error("--stdlib-python %s: does not run (%s)" % (python, exc))
    if out.returncode != 0 or out.stdout.strip() != "3":
        parser.error("--stdlib-python %s: not a Python 3 interpreter" % python)


def output_paths(args):
    """The files this run writes (left out of the dirty-tree check)."""
    return [p for p in (args.json, args.plot, args.markdown) if p]


def parse_args(argv, scenarios):
    """Parse and check ``argv``; exit with status 2 on the first problem."""
    parser = build_parser(scenarios)
    args = parser.parse_args(argv)
    if not args.scenarios:
        parser.error("--scenarios: no scenario given")
    if args.stdlib_python:
        _check_python(parser, args.stdlib_python)
    if args.baseline and not os.path.isdir(args.baseline):
        parser.error("--baseline %s: not a directory" % args.baseline)
    if args.allow_dirty and not args.markdown:
        parser.error("--allow-dirty applies to --markdown only")
    for option in ("json", "plot", "markdown"):
        path = getattr(args, option)
        if path:
            _check_output(parser, "--" + option, path)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed here: "
                         "pip install -e \".[bench]\" in the checkout, or pip install matplotlib")
    if args.markdown:
        commit, dirty = git_state(exclude=output_paths(args))
        if dirty and not args.allow_dirty:
            parser.error("--markdown: the checkout %s has uncommitted changes (git status); "
                         "commit them first so the report names the code it measured, or pass "
                         "--allow-dirty" % checkout_root())
    for old in dict.fromkeys(parser.renamed_impls):
        # one line per old name, after the command line was accepted: scripts keep working
        sys.stderr.write("%s: note: --impls %s is deprecated, use %s (same implementation)\n"
                         % (parser.prog, old, RENAMED_IMPLS[old]))
    args.parser = parser
    return args
