"""The command lines: ``python -m asynchat_core`` and ``python -m asynchat_core.bench``.

Every bad benchmark argument is refused before any work starts, with one
line on stderr and exit status 2; Ctrl-C stops the children, prints the
results measured so far and exits with 130.  All runs are real
subprocesses.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import asynchat_core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = [sys.executable, "-m", "asynchat_core.bench"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(args, cwd=None, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=cwd or ROOT)


REJECTED = [
    (["--kernel-workloads", "nosuch"], "unknown kernel workload 'nosuch'"),
    (["--impls", "nosuch"], "unknown implementation 'nosuch'"),
    # the old name is accepted, but a refusal is still one line (no note first)
    (["--impls", "pure,nosuch"], "unknown implementation 'nosuch'"),
    (["--scenarios", "nosuch"], "unknown scenario 'nosuch'"),
    (["--scenarios", ","], "--scenarios: no scenario given"),
    (["--resp-tests", "nosuch"], "unknown RESP test 'nosuch'"),
    (["--sizes", "0"], "message size 0 is out of range"),
    (["--sizes", "1k"], "'1k' is not a whole number of bytes"),
    (["--sizes", "-5"], "'-5' is not a whole number of bytes"),
    (["--sizes", "1024,,x"], "'x' is not a whole number of bytes"),
    (["--duration", "0"], "argument --duration: must be more than 0, got 0"),
    (["--duration", "-2"], "argument --duration: must be more than 0, got -2"),
    (["--duration", "nan"], "'nan' is not a finite number"),
    (["--duration", "abc"], "'abc' is not a number"),
    (["--rounds", "0"], "argument --rounds: must be at least 1, got 0"),
    (["--rounds", "1.5"], "'1.5' is not a whole number"),
    (["--pipeline", "0"], "argument --pipeline: must be at least 1, got 0"),
    (["--echo-clients", "0"], "argument --echo-clients: must be at least 1, got 0"),
    (["--clients", "0"], "argument --clients: must be at least 1, got 0"),
    (["--clients", "-3"], "argument --clients: must be at least 1, got -3"),
    (["--echo-depth", "-1"], "argument --echo-depth: must be at least 0, got -1"),
    (["--kernel-seconds", "0"], "argument --kernel-seconds: must be more than 0, got 0"),
    (["--kernel-seconds", "-1"], "argument --kernel-seconds: must be more than 0, got -1"),
    (["--stdlib-python", "/nonexistent/python3"], "--stdlib-python /nonexistent/python3: no such file"),
    (["--stdlib-python", ROOT], "not an executable file"),
    (["--baseline", "/nonexistent/checkout"], "--baseline /nonexistent/checkout: not a directory"),
    (["--allow-dirty"], "--allow-dirty applies to --markdown only"),
    (["--nosuch-option"], "unrecognized arguments: --nosuch-option"),
]


def _assert_one_line_refusal(proc, expected):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m asynchat_core.bench: error: "), lines[0]
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("args,expected", REJECTED, ids=[" ".join(a) for a, _ in REJECTED])
def test_bench_rejects_bad_arguments(args, expected, tmp_path):
    started = time.monotonic()
    proc = run(BENCH + args, cwd=str(tmp_path))
    _assert_one_line_refusal(proc, expected)
    # refused up front: no server, no measurement (those take seconds)
    assert time.monotonic() - started < 20
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--json", "--plot", "--markdown"])
def test_bench_rejects_unwritable_output_before_running(option, tmp_path):
    missing_dir = str(tmp_path / "no" / "such" / "dir" / "out.file")
    proc = run(BENCH + [option, missing_dir])
    _assert_one_line_refusal(proc, "%s %s: cannot write there" % (option, missing_dir))
    proc = run(BENCH + [option, str(tmp_path)])
    _assert_one_line_refusal(proc, "%s %s: is a directory" % (option, tmp_path))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    inside_file = str(blocker / "out.file")
    proc = run(BENCH + [option, inside_file])
    _assert_one_line_refusal(proc, "cannot write there")


def test_bench_plot_without_matplotlib_is_refused_up_front(tmp_path):
    # matplotlib made unimportable in the child: the check must happen at startup
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "sys.argv[0] = 'python -m asynchat_core.bench'; "
            "from asynchat_core.bench.cli import main; "
            "sys.exit(main(['--plot', %r]))" % str(tmp_path / "chart.png"))
    proc = run([sys.executable, "-c", code])
    _assert_one_line_refusal(proc, "--plot needs matplotlib, which is not installed here")
    assert "pip install asynchat-core" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/bin/false"), reason="POSIX: needs /bin/false")
def test_bench_stdlib_python_that_is_not_python_is_refused(tmp_path):
    proc = run(BENCH + ["--stdlib-python", "/bin/false"], cwd=str(tmp_path))
    _assert_one_line_refusal(proc, "--stdlib-python /bin/false: not a Python 3 interpreter")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script as the interpreter")
def test_bench_stdlib_python_without_asyncore_is_refused(tmp_path):
    # a working interpreter whose asyncore cannot be imported (3.12+ has none;
    # here one hidden by -c is simulated with a wrapper script)
    wrapper = tmp_path / "python-without-asyncore"
    wrapper.write_text("#!/bin/sh\ncase \"$2\" in *load_modules*) echo 'No module named asyncore' >&2;"
                       " exit 1;; esac\nexec %s \"$@\"\n" % sys.executable)
    wrapper.chmod(0o755)
    proc = run(BENCH + ["--stdlib-python", str(wrapper), "--scenarios", "kernel"], timeout=120)
    _assert_one_line_refusal(proc, "no usable asyncore/asynchat there")


def test_bench_version():
    proc = run(BENCH + ["--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "asynchat_core %s (%s build, Python %s)" % (
        asynchat_core.__version__, asynchat_core.IMPLEMENTATION, sys.version.split()[0])


def _kernel_run(impls, tmp_path):
    out = tmp_path / ("%s.json" % impls.replace(",", "+"))
    proc = run(BENCH + ["--scenarios", "kernel", "--impls", impls, "--kernel-workloads",
                        "lines32-64k", "--kernel-seconds", "0.05", "--rounds", "1", "--quiet",
                        "--json", str(out)], cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_bench_impls_python_names_the_python_build(tmp_path):
    proc, data = _kernel_run("python", tmp_path)
    assert proc.stderr == ""
    assert [r["impl"] for r in data["records"]] == ["python"]
    assert data["environment"]["implementations"]["python"] == "asynchat_core (Python build)"
    assert "pure" not in data["environment"]["implementations"]
    table = [line.split() for line in proc.stdout.splitlines() if "lines32-64k" in line]
    assert table and table[0][:2] == ["lines32-64k", "python"], proc.stdout


def test_bench_impls_pure_is_a_deprecated_alias_of_python(tmp_path):
    # scripts written for the old name keep working: same run, one note on stderr
    proc, data = _kernel_run("pure", tmp_path)
    assert proc.stderr.splitlines() == [
        "python -m asynchat_core.bench: note: --impls pure is deprecated, use python "
        "(same implementation)"]
    assert [r["impl"] for r in data["records"]] == ["python"]
    assert "pure" not in data["environment"]["implementations"]
    assert "pure" not in proc.stdout
    # both names at once: one implementation, still one note
    proc, data = _kernel_run("pure,python", tmp_path)
    assert len(proc.stderr.splitlines()) == 1 and "--impls pure is deprecated" in proc.stderr
    assert [r["impl"] for r in data["records"]] == ["python"]


@pytest.mark.compiled
def test_bench_baseline_is_the_checkout_given_even_run_from_another(tmp_path):
    # run from this checkout (the first place -m and -c look), with a copy
    # of its package, compiled modules included, as the baseline: the
    # baseline's probe and workers must import the copy
    base = tmp_path / "base"
    shutil.copytree(os.path.join(ROOT, "asynchat_core"), str(base / "asynchat_core"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out.json"
    proc = run(BENCH + ["--scenarios", "kernel", "--impls", "cython,baseline",
                        "--baseline", str(base), "--kernel-workloads", "lines32-64k",
                        "--kernel-seconds", "0.05", "--rounds", "1", "--quiet",
                        "--json", str(out)], cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert sorted(r["impl"] for r in data["records"]) == ["baseline", "cython"], proc.stdout


def test_bench_help_names_python_and_the_old_alias():
    proc = run(BENCH + ["--help"])
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "cython,baseline,python,stdlib," in text
    assert "'pure' is the old name of python" in text
    assert "'kernel' runs the chat code in process" in text


def test_package_version_and_report():
    proc = run([sys.executable, "-m", "asynchat_core", "--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "asynchat_core %s" % asynchat_core.__version__
    proc = run([sys.executable, "-m", "asynchat_core"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "asynchat_core %s" % asynchat_core.__version__
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["implementation"].startswith(asynchat_core.IMPLEMENTATION + " (")
    from asynchat_core import asyncore

    backends = asyncore.available_backends()
    assert fields["backends"] == "%s (default: %s)" % (", ".join(backends), backends[0])
    assert sys.version.split()[0] in fields["python"]
    assert fields["platform"]


def test_package_report_names_the_forced_python_build():
    env = _env()
    env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "asynchat_core"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert ("implementation: python (the Python build, chosen by ASYNCHAT_CORE_NO_EXTENSIONS=1)"
            in proc.stdout.splitlines())


def test_package_rejects_unknown_argument():
    proc = run([sys.executable, "-m", "asynchat_core", "--nosuch"])
    assert proc.returncode == 2
    assert "unrecognized arguments: --nosuch" in proc.stderr
    assert "Traceback" not in proc.stderr


def _group_members(pgid):
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is the state, fields[2] the process group
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_bench_ctrl_c_stops_children_and_prints_partial_results(tmp_path):
    out = tmp_path / "partial.json"
    cmd = BENCH + ["--scenarios", "kernel,echo", "--impls", "python",
                   "--kernel-workloads", "lines32-64k", "--kernel-seconds", "0.05",
                   "--rounds", "1", "--sizes", "1024", "--duration", "20", "--builtin-client",
                   "--json", str(out)]
    # its own session and process group, so every child it starts can be found
    # SIGINT at its default: a shell running pytest in the background makes
    # it ignored, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=str(tmp_path), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        seen = []
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "echo: python on port" in line:
                break
        assert any("echo: python on port" in s for s in seen), "".join(seen)
        time.sleep(1.5)  # inside the 20 s echo measurement: server and load client running
        assert len(_group_members(proc.pid)) >= 3, _group_members(proc.pid)
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = "".join(seen) + stderr
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    assert "Interrupted: the results measured before Ctrl-C follow." in stdout
    # the kernel case finished before Ctrl-C and is reported
    assert "lines32-64k" in stdout and "Scenario 1" in stdout, stdout
    import json

    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    assert [(r["scenario"], r["case"]) for r in data["records"]] == [("kernel", "lines32-64k")]
    deadline = time.monotonic() + 5
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == []


def test_free_threaded_build_gets_the_python_build_deliberately():
    # no free-threaded interpreter here: the build is faked in a child
    # before asynchat_core is imported, as a 3.13t/3.14t reports it (the "t"
    # ABI flag; the build flag, for Windows before 3.14, which has no ABI
    # flags; and sys._is_gil_enabled, which every 3.13+ has)
    code = ("import sys, sysconfig, warnings; real = sysconfig.get_config_var; "
            "sysconfig.get_config_var = lambda name: 1 if name == 'Py_GIL_DISABLED' "
            "else real(name); warnings.simplefilter('error'); "
            "flags = getattr(sys, 'abiflags', None); "
            "sys.abiflags = None if flags is None else flags + 't'; "
            "sys._is_gil_enabled = getattr(sys, '_is_gil_enabled', lambda: False); "
            "sys.argv[0] = 'python -m asynchat_core'; "
            "from asynchat_core.__main__ import main; sys.exit(main([]))")
    env = _env()
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    # no warning (turned into an error above): the choice is by design
    assert proc.returncode == 0, proc.stderr
    assert ("implementation: python (the Python build; nothing is compiled for free-threaded "
            "CPython (docs/platforms.md))") in proc.stdout.splitlines()
