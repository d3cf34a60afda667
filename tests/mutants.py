#!/usr/bin/env python
"""The mutation check: plant each bug of ``tests/mutants.toml`` and make
sure the tests named for it fail.

    python tests/mutants.py                   # every mutant, Python build
    python tests/mutants.py --build cython    # rebuilds the extension per mutant
    python tests/mutants.py -k held -k lock   # mutants whose name contains a word
    python tests/mutants.py --list
    python tests/mutants.py -k lock --tests "tests/test_reentrancy.py -k four"

Each mutant names a file, a snippet that must occur in it exactly once (the
check stops before running anything if one does not: a refactor must not
silently disable a mutant), its replacement, and the pytest arguments of
the tests that must kill it.  The tree is copied once to a temporary
directory (files tracked by git, plus the working copy's changes); each
mutant is applied there, its tests run, and the file restored.  The
worktree itself is never written.

A mutant is *killed* when its tests fail (pytest exit status 1) or time out;
it *survived* when they pass.  Any other pytest status (collection errors,
usage errors, no tests collected) is an *error*: the selection is broken.
Before the mutants, the union of the selections runs once on the unmodified
copy and must pass (``--no-baseline`` skips that).  Exit status: 0 when every
mutant was killed, 1 otherwise.

Not part of ``pytest``: it runs nightly or on demand (docs/mutation.md).
"""
import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        sys.exit("mutants.py: needs Python 3.11+ (tomllib) or the tomli package")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "mutants.toml")
FIELDS = {"name", "file", "find", "replace", "tests", "why"}
# ``build = "cython"``: the mutated code runs only compiled (an
# ``if cython.compiled:`` branch), so the Python build's run skips it
OPTIONAL = {"build"}
BUILDS = ("python", "cython")


def load(path=DATA):
    """The mutants of ``path``, checked for their fields; dies on an error."""
    with open(path, "rb") as f:
        mutants = tomllib.load(f)["mutant"]
    names = set()
    for m in mutants:
        missing = FIELDS - set(m)
        extra = set(m) - FIELDS - OPTIONAL
        if missing or extra:
            sys.exit("mutants.toml: %s: missing %s, unknown %s"
                     % (m.get("name", "?"), sorted(missing), sorted(extra)))
        if m["name"] in names:
            sys.exit("mutants.toml: duplicate name %r" % m["name"])
        names.add(m["name"])
        if m["find"] == m["replace"]:
            sys.exit("mutants.toml: %s: the replacement changes nothing" % m["name"])
        if m.get("build", "python") not in BUILDS:
            sys.exit("mutants.toml: %s: build must be one of %s" % (m["name"], BUILDS))
    return mutants


def check_snippets(mutants, root):
    """Every snippet occurs exactly once in its file; dies listing the ones that do not."""
    bad = []
    for m in mutants:
        path = os.path.join(root, m["file"])
        try:
            with open(path, encoding="utf-8") as f:
                count = f.read().count(m["find"])
        except OSError as exc:
            bad.append("%s: %s" % (m["name"], exc))
            continue
        if count != 1:
            bad.append("%s: the snippet occurs %d times in %s (must be exactly once)"
                       % (m["name"], count, m["file"]))
    if bad:
        sys.exit("mutants.py: stale mutants, fix tests/mutants.toml:\n  " + "\n  ".join(bad))


def copy_tree(dest):
    """Copy the files git tracks (as they are in the working copy) to ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        rel = os.fsdecode(name)
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue  # deleted in the working copy
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target)


def environment(tree, build):
    env = dict(os.environ)
    # the copy, not the worktree (an editable install points there), is what
    # the tests and the servers they start import
    env["PYTHONPATH"] = tree + os.pathsep + os.path.join(tree, "tests")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if build == "python":
        env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    else:
        env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    return env


def build_extension(tree, env):
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                          cwd=tree, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def check_import(tree, env, build):
    """The copy's asynchat_core is the one imported, with the build asked for."""
    code = "import asynchat_core as a; print(a.__file__); print(a.IMPLEMENTATION)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True,
                         stdout=subprocess.PIPE).stdout.decode().split()
    if not out[0].startswith(tree) or out[1] != build:
        sys.exit("mutants.py: the copy imports %s (%s), not its own %s build"
                 % (out[0], out[1], build))


def run_tests(tree, env, args, build, timeout):
    """pytest ``args`` in ``tree``: (status, seconds, output); status None on timeout."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    if build == "python":
        cmd.append("--no-compiled")
    cmd += args
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this run started, nothing else
        out, _ = proc.communicate()
        status = None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # interrupted: leave no test run behind
        proc.wait()
        raise
    return status, time.monotonic() - start, out.decode("utf-8", "replace")


def first_failure(output):
    """The test that killed the mutant: the first FAILED line of pytest's
    short summary, else the first ERROR line (a fixture's setup or teardown
    failed, e.g. a leak check)."""
    lines = output.splitlines()
    for prefix in ("FAILED ", "ERROR "):
        for line in lines:
            if line.startswith(prefix):
                return line.split(" - ")[0]
    return "(no FAILED line)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", choices=BUILDS, default="python")
    parser.add_argument("-k", action="append", default=[], metavar="WORD",
                        help="only mutants whose name contains WORD (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the selections on the unmodified tree")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds per test run (a run that takes longer kills the mutant)")
    parser.add_argument("--tests", metavar="ARGS",
                        help="run these pytest arguments instead of each mutant's own "
                             "(to show that another test kills it too)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print the output of runs that did not kill their mutant")
    opts = parser.parse_args(argv)

    # a terminated check still removes its copy and its test run
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    mutants = load()
    check_snippets(mutants, ROOT)
    if opts.k:
        mutants = [m for m in mutants if any(w in m["name"] for w in opts.k)]
        if not mutants:
            sys.exit("mutants.py: no mutant matches %s" % opts.k)
    other = [m["name"] for m in mutants if m.get("build", opts.build) != opts.build]
    if other:
        print("skipped, for the other build: %s" % ", ".join(other))
        mutants = [m for m in mutants if m["name"] not in other]
        if not mutants:
            sys.exit("mutants.py: no mutant left for the %s build" % opts.build)
    if opts.list:
        for m in mutants:
            print("%-40s %-28s %s" % (m["name"], m["file"], m["tests"]))
        return 0

    tree = tempfile.mkdtemp(prefix="asynchat_core-mutants-")
    try:
        copy_tree(tree)
        check_snippets(mutants, tree)
        env = environment(tree, opts.build)
        if opts.build == "cython":
            try:
                import Cython  # noqa: F401
            except ImportError:
                sys.exit("mutants.py: --build cython compiles in this interpreter: "
                         "pip install 'Cython>=3.3.0,<4' 'setuptools>=77.0.3'")
            rc, out = build_extension(tree, env)
            if rc:
                print(out)
                sys.exit("mutants.py: the unmodified copy does not build")
        check_import(tree, env, opts.build)

        if not opts.no_baseline:
            selection = []
            for m in mutants:
                for arg in shlex.split(opts.tests or m["tests"]):
                    if arg not in selection:
                        selection.append(arg)
            # a -k or node id per mutant: the baseline runs each selection's files
            files = sorted({a.split("::")[0] for a in selection if a.startswith("tests/")})
            status, secs, out = run_tests(tree, env, files, opts.build, opts.timeout * 3)
            print("baseline: %s in %.0f s (%s)" % (
                "passed" if status == 0 else "FAILED (%s)" % status, secs, " ".join(files)))
            if status != 0:
                print(out[-5000:])
                return 1

        results = []
        for m in mutants:
            path = os.path.join(tree, m["file"])
            with open(path, encoding="utf-8") as f:
                original = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(m["find"], m["replace"], 1))
            try:
                note = ""
                if opts.build == "cython":
                    rc, out = build_extension(tree, env)
                    if rc:
                        results.append((m, "killed", 0.0, "(does not compile)"))
                        print("%-40s killed    (does not compile)" % m["name"])
                        continue
                status, secs, out = run_tests(tree, env, shlex.split(opts.tests or m["tests"]),
                                              opts.build, opts.timeout)
                if status is None:
                    verdict, note = "killed", "(timeout after %.0f s)" % secs
                elif status == 1:
                    verdict, note = "killed", first_failure(out)
                elif status == 0:
                    verdict = "SURVIVED"
                else:
                    verdict, note = "ERROR", "pytest exit status %d" % status
                results.append((m, verdict, secs, note))
                print("%-40s %-9s %5.0f s  %s" % (m["name"], verdict, secs, note), flush=True)
                if verdict != "killed" and opts.verbose:
                    print(out[-5000:])
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original)
        if opts.build == "cython":
            build_extension(tree, env)  # (the copy is thrown away; kept whole anyway)
    finally:
        shutil.rmtree(tree, ignore_errors=True)

    killed = sum(1 for r in results if r[1] == "killed")
    print("\n%d mutants, %d killed, %d survived, %d errors (%s build)" % (
        len(results), killed, sum(1 for r in results if r[1] == "SURVIVED"),
        sum(1 for r in results if r[1] == "ERROR"), opts.build))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
