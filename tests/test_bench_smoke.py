"""Smoke test of ``python -m asynchat_core.bench``: kernel + echo, built-in client.

Needs neither redis nor wrk; bounded to a few seconds of load.
"""
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cli_kernel_and_echo(tmp_path):
    out = tmp_path / "bench.json"
    compiled = importlib.util.find_spec("asynchat_core._chat_c") is not None
    impls = ["cython", "pure"] if compiled else ["pure"]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable, "-m", "asynchat_core.bench",
        "--scenarios", "kernel,echo", "--impls", ",".join(impls),
        "--kernel-workloads", "lines32-64k,records100", "--kernel-seconds", "0.05",
        "--sizes", "1024", "--duration", "0.3", "--builtin-client", "--json", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not data["errors"]
    rates = {(r["scenario"], r["case"], r["impl"]): r["rate"] for r in data["records"]}
    for impl in impls:
        for key in (("kernel", "lines32-64k", impl), ("kernel", "records100", impl),
                    ("echo", "1 KiB", impl)):
            assert rates.get(key, 0) > 0, (key, rates)
    echo = [r for r in data["records"] if r["scenario"] == "echo"]
    assert all(r["load"] == "built-in" and r["requests"] > 0 for r in echo)
    # the table is printed and names the targets
    assert "Targets" in proc.stdout and "line echo 1 KiB" in proc.stdout
