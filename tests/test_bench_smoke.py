"""Smoke test of ``python -m asynchat_core.bench``: kernel + echo, built-in client.

Needs neither redis nor wrk; bounded to a few seconds of load.
"""
import importlib.util
import json
import os
import socket
import subprocess
import sys
import zlib

import pytest

from asynchat_core.bench import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cli_kernel_and_echo(tmp_path):
    out = tmp_path / "bench.json"
    compiled = importlib.util.find_spec("asynchat_core._chat_c") is not None
    impls = ["cython", "python"] if compiled else ["python"]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable, "-m", "asynchat_core.bench",
        "--scenarios", "kernel,echo", "--impls", ",".join(impls), "--rounds", "2",
        "--kernel-workloads", "lines32-64k,records100", "--kernel-seconds", "0.05",
        "--sizes", "1024", "--duration", "0.3", "--builtin-client", "--python-client",
        "--json", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"] and data["interrupted"] is False
    rates = {(r["scenario"], r["case"], r["impl"]): r for r in data["records"]}
    for impl in impls:
        for key in (("kernel", "lines32-64k", impl), ("kernel", "records100", impl),
                    ("echo", "1 KiB", impl)):
            record = rates[key]
            # one figure per round; the headline figure is their median
            assert len(record["samples"]) == 2 and all(s > 0 for s in record["samples"])
            assert record["rate"] == report.median(record["samples"])
    echo = [r for r in data["records"] if r["scenario"] == "echo"]
    assert all(r["load"] == "built-in" and r["requests"] > 0 for r in echo)
    assert "median of 2 rounds" in proc.stdout
    if compiled:
        assert "cython/this" in proc.stdout
    # the project's goals are opt-in (--goals), and the tables fit 100 columns
    assert "goals" not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


def _record(scenario, case, impl, samples, cpu=None):
    r = {"scenario": scenario, "case": case, "impl": impl, "unit": "req/s",
         "samples": samples, "rate": report.median([s for s in samples if s is not None])}
    if cpu:
        r["cpu_samples"] = cpu
        r["cpu_us"] = report.median(cpu)
    return r


RECORDS = [
    _record("resp", "PING_INLINE -P16", "cython", [300.0, 310.0, 290.0], [1.0, 1.1, 0.9]),
    _record("resp", "PING_INLINE -P16", "stdlib", [100.0, 100.0, 100.0], [3.0, 3.0, 3.0]),
    _record("resp", "PING_INLINE -P16", "uvloop", [280.0, 320.0, 300.0], [1.0, 1.0, 1.0]),
    _record("resp", "PING_INLINE -P16", "asyncio-streams", [150.0, None, 160.0]),
]
ENV = {"asynchat_core": "0.0", "implementation": "cython", "git": "abc1234", "git_dirty": False,
       "python": "3.12.1", "machine": "test machine, 2 CPUs", "cpus": 2, "rounds": 3,
       "date": "2026-12-01 00:00 UTC",
       "implementations": {"cython": "asynchat_core (compiled build)"}}


def test_ratios_are_per_round_medians_with_range_and_noise_flag():
    table = {r["impl"]: r for r in RECORDS}
    stats = report.ratio(table["cython"], table["stdlib"])
    assert stats == {"median": 3.0, "min": 2.9, "max": 3.1, "n": 3}
    assert not report.within_noise(stats)
    # 300/280, 310/320, 290/300: the rounds disagree about which is faster
    stats = report.ratio(table["cython"], table["uvloop"])
    assert stats["min"] < 1.0 < stats["max"] and report.within_noise(stats)
    # a failed round (None) is left out of the pairs
    assert report.ratio(table["cython"], table["asyncio-streams"])["n"] == 2
    text = report.render_text(RECORDS, None, {}, [], ENV)
    lines = text.splitlines()
    uvloop = [line for line in lines if line.strip().startswith("uvloop")][0]
    assert uvloop.rstrip().endswith("within noise")
    stdlib = [line for line in lines if line.strip().startswith("stdlib")][0]
    assert "3.00x" in stdlib and "2.90-3.10" in stdlib and "noise" not in stdlib
    assert max(len(line) for line in lines) <= 100


def test_goals_only_when_asked_and_labelled():
    goals = report.check_targets(RECORDS)
    assert "goals" not in report.render_text(RECORDS, None, {}, [], ENV)
    text = report.render_text(RECORDS, goals, {}, [], ENV)
    assert "The project's own goals" in text
    assert "RESP -P16 PING_INLINE >= 6x stdlib" in text and "not met" in text


def test_markdown_keeps_other_python_sections_and_notes(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    data = {"command": "python -m asynchat_core.bench", "environment": dict(ENV),
            "records": RECORDS, "goals": [], "skipped": {}, "errors": [], "seconds": 1.0}
    report.render_markdown(str(path), data)
    with open(path, "a") as f:
        f.write("hand-written note\n")
    older = dict(data, environment=dict(ENV, python="3.11.7", git="def5678"))
    report.render_markdown(str(path), older)
    report.render_markdown(str(path), data)  # the 3.12 section is replaced, not added
    text = path.read_text()
    assert text.count("## Python 3.12\n") == 1 and text.count("## Python 3.11\n") == 1
    assert text.index("## Python 3.12") < text.index("## Python 3.11")  # newest first
    assert "git def5678" in text and "git abc1234" in text
    assert text.rstrip().endswith("hand-written note")


def test_plot_is_written(tmp_path):
    if os.environ.get("ASYNCHAT_CORE_REQUIRE_OPTIONAL", "") in ("", "0"):
        pytest.importorskip("matplotlib")  # (the bench extra)
    else:
        import matplotlib  # noqa: F401  # CI's job with the bench extra: never skip
    path = tmp_path / "chart.png"
    # in a child: matplotlib keeps its font files open for the life of the process
    code = ("import json, sys; from asynchat_core.bench import report; "
            "report.write_plot(sys.argv[1], *json.loads(sys.argv[2]))")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code, str(path), json.dumps([RECORDS, ENV])],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_from_before_the_rename_reads_as_python():
    # --json files written before the rename call the Python build "pure" and
    # the implementation in use "kernels"; upgrade() gives today's names
    old_env = dict(ENV, implementations={"cython": "asynchat_core (Cython)",
                                         "pure": "asynchat_core (pure twin)"})
    del old_env["implementation"]
    old_env["kernels"] = "cython"
    old = {"environment": old_env,
           "records": RECORDS + [_record("resp", "PING_INLINE -P16", "pure", [150.0] * 3)]}
    new = report.upgrade(old)
    assert [r["impl"] for r in new["records"]] == [
        "cython", "stdlib", "uvloop", "asyncio-streams", "python"]
    assert list(new["environment"]["implementations"]) == ["cython", "python"]
    assert new["environment"]["implementation"] == "cython"
    assert "kernels" not in new["environment"]
    assert old["records"][-1]["impl"] == "pure"  # the input is not changed
    text = report.render_text(new["records"], None, {}, [], new["environment"])
    assert "(cython build," in text
    rows = [line.split() for line in text.splitlines()]
    # the table row (labels are kept as recorded: the old file's "pure twin")
    assert ["python", "150", "150-150", "2.00x"] in [r[:4] for r in rows]
    assert not [r for r in rows if r and r[0] == "pure"]


def test_bench_cli_framing(tmp_path):
    # the framing scenario's servers answer (built-in client: no redis-tools
    # needed); the framer servers are asynchat_core's only
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable, "-m", "asynchat_core.bench", "--scenarios", "framing", "--impls", "python",
        "--rounds", "1", "--duration", "0.2", "--builtin-client", "--resp-tests", "set",
        "--json", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"], data["errors"]
    got = {(r["case"], r["impl"]) for r in data["records"]
           if r["scenario"] == "framing" and r["rate"]}
    for case in ("RESP SET -P1", "LP 100B -P16", "LP 4096B -P1"):
        assert (case, "python-framer") in got, (case, got)
    # the C load client where a compiler builds it (tests/test_bench_cclient.py)
    loads = {r["load"] for r in data["records"] if r["scenario"] == "framing"}
    assert loads == {"built-in C" if __import__("shutil").which("cc") else "built-in"}, loads


@pytest.mark.skipif(not (__import__("shutil").which("wrk") and sys.platform.startswith("linux")),
                    reason="needs wrk, fork() and /proc")
def test_bench_cli_workers(tmp_path):
    # the workers scenario: 1 and 2 worker processes measured side by side
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "asynchat_core.bench", "--scenarios", "workers",
           "--impls", "python", "--workers", "2", "--rounds", "1", "--duration", "0.5",
           "--clients", "8", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"], data["errors"]
    cases = {(r["case"], r["impl"]): r for r in data["records"] if r["scenario"] == "workers"}
    for case in ("HTTP keep-alive", "HTTP page (render + deflate)"):
        for impl in ("python x1", "python x2"):
            record = cases[(case, impl)]
            assert record["rate"] > 0 and record["load"] == "wrk -t2" and record["cpu_us"] > 0
    assert "x2 / x1 =" in proc.stderr


def _http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, body
            body += chunk
        return head, body


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers need fork() and /proc")
@pytest.mark.parametrize("source,workers", [("asynchat_core", 0), ("asynchat_core", 2),
                                            ("asyncio", 0), ("asyncio", 2)])
def test_http_page_servers_render_the_same_page(source, workers):
    # the workers scenario's handler with real work: every server renders
    # the same page for the requested path (escaped), a complete response
    from asynchat_core.bench import procs
    from asynchat_core.bench.impls import discover
    from asynchat_core.bench.servers import PAGE_ROWS

    target = discover()[0]["asyncio" if source == "asyncio" else "python"]
    proc, port = procs.start_worker_server(target, "http-page", workers=workers)
    try:
        head, body = _http_get(port, b"/a<b>")
    finally:
        procs.stop(proc)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Encoding: deflate" in head
    page = zlib.decompress(body)
    assert page.count(b"<tr>") == PAGE_ROWS and b"<title>/a&lt;b&gt;</title>" in page
    assert page.endswith(b"</table></body></html>")
