"""Scenario "tls": 1 KiB line echo and HTTPS keep-alive over TLS (issue 11).

Servers, side by side in one run, each in its own process:

- ``cython`` / ``python``: asynchat_core's compiled / Python build with
  ``asynchat_core.tls`` (and ``baseline``: the same from the checkout given
  to ``--baseline``);
- ``stdlib``: the same handlers on the stdlib asynchat (pyasynchat on 3.12+)
  under a hand-written legacy TLS mixin (``tls_servers.HandRolledTLS``);
- ``asyncio`` / ``uvloop``: ``loop.create_server(ssl=...)`` Protocol servers.

Workloads:

- ``echo 1 KiB``: ``--echo-clients`` connections, each keeping a block of
  ``--echo-depth`` (default 32) distinct 1 KiB lines in flight; the built-in
  client (``tls_client``) checks every echoed byte.
- ``HTTPS keep-alive``: ``wrk -t1 -c<--clients>`` against ``https://``, or,
  without wrk (or with ``--builtin-client``), the built-in client with one
  request in flight per connection and every response byte checked.

All servers share one certificate, issued at run time by a throwaway CA
(``trustme``, in the bench extra; the ``openssl`` command is the fallback).
Each case is measured ``--rounds`` times per server, servers interleaved;
the record holds the median with the min-max range.

Child processes:

    python -m asynchat_core.bench.tls server SOURCE KIND CERTFILE KEYFILE
    python -m asynchat_core.bench.tls client JSON
    python -m asynchat_core.bench.tls table BENCH.json   (Markdown, with ranges)
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

from . import procs

SCENARIO = "tls"
# "baseline": asynchat_core from another checkout (``--baseline DIR``) that has the TLS API
TLS_IMPLS = ("cython", "baseline", "python", "stdlib", "asyncio", "uvloop")
ECHO_SIZE = 1024
ECHO_CASE = "echo 1 KiB"
HTTPS_CASE = "HTTPS keep-alive"
# what the client checks the server's certificate against
HOSTNAME = "localhost"


# -- certificates ---------------------------------------------------------------

def make_certificates(directory):
    """Write ``ca.pem``, ``server.pem`` (chain) and ``server.key``; return their paths.

    trustme when installed, else a self-signed certificate from the
    ``openssl`` command (then ``ca.pem`` is the certificate itself).
    """
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    try:
        import trustme
    except ImportError:
        return _openssl_certificates(ca_path, cert_path, key_path)
    else:
        ca = trustme.CA()
        leaf = ca.issue_cert(HOSTNAME, "127.0.0.1")
        ca.cert_pem.write_to_path(ca_path)
        leaf.private_key_pem.write_to_path(key_path)
        with open(cert_path, "wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        return ca_path, cert_path, key_path


def _openssl_certificates(ca_path, cert_path, key_path):
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("no certificate maker: pip install trustme (the bench extra) "
                           "or install the openssl command")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=" + HOSTNAME,
         "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % HOSTNAME,
         "-keyout", key_path, "-out", cert_path],
        check=True, capture_output=True, timeout=60)
    shutil.copyfile(cert_path, ca_path)
    return ca_path, cert_path, key_path


# -- servers and load -----------------------------------------------------------

class _ServerTarget:
    """``Target`` look-alike for ``procs.start_worker_server``: starts a TLS server."""

    def __init__(self, target, certfile, keyfile):
        self.target = target
        self.certfile = certfile
        self.keyfile = keyfile

    def command(self, role, source, kind):
        return [self.target.python, "-m", "asynchat_core.bench.tls", role, source, kind,
                self.certfile, self.keyfile]

    def environ(self):
        return self.target.environ()

    def cwd(self):
        return self.target.cwd()

    @property
    def source(self):
        return self.target.source


def builtin_tls_client(**params):
    """Run ``tls_client.run_tls_client(**params)`` in its own process; return its dict."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "asynchat_core.bench.tls", "client", json.dumps(params)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         timeout=60 + 4 * params["duration"])
    if out.returncode != 0:
        raise RuntimeError("TLS load client failed: %s"
                           % (out.stderr or out.stdout).strip()[-400:])
    return json.loads(out.stdout)


def wrk_https(port, clients, duration):
    """``wrk -t1`` over https; return ``(rate, requests)``."""
    return procs.wrk(port, clients, duration, scheme="https")


def _chosen(args, targets, run):
    names = []
    for name in TLS_IMPLS:
        if args.impls and name not in args.impls:
            continue
        target = targets.get(name)
        if target is None:
            continue
        if target.source == "asynchat_core" and target.root and not os.path.exists(
                os.path.join(target.root, "asynchat_core", "tls.py")):
            run.skip("tls/%s" % name, "%s has no asynchat_core/tls.py" % target.root)
            continue
        names.append(name)
    return names


def _summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def run_tls(args, run, targets):
    """Run the TLS scenario: start the servers, measure each case, record medians."""
    names = _chosen(args, targets, run)
    if not names:
        run.skip("tls", "no TLS implementation selected")
        return
    use_wrk = bool(shutil.which("wrk")) and not args.builtin_client
    if not use_wrk and not args.builtin_client:
        run.skip("wrk (tls)", "wrk missing (apt install wrk); HTTPS uses the built-in client")
    rounds = max(1, args.rounds)
    depth = args.echo_depth or max(1, 32768 // ECHO_SIZE)
    with tempfile.TemporaryDirectory(prefix="asynchat-core-tls-") as certdir:
        try:
            cafile, certfile, keyfile = make_certificates(certdir)
        except Exception as exc:  # noqa: BLE001 - no certificate: no scenario, the rest runs
            run.error("tls/certificates", exc)
            return
        servers = {}
        try:
            for name in names:
                try:
                    servers[name] = procs.start_worker_server(
                        _ServerTarget(targets[name], certfile, keyfile), "echo")
                    servers[name + " http"] = procs.start_worker_server(
                        _ServerTarget(targets[name], certfile, keyfile), "http")
                except Exception as exc:  # noqa: BLE001 - one failing server must not end the run
                    run.error("tls/%s server" % name, exc)
            running = [n for n in names if n in servers and n + " http" in servers]
            for name in running:
                run.progress("tls: %s echo on port %d (pid %d), https on port %d (pid %d)" % (
                    name, servers[name][1], servers[name][0].pid,
                    servers[name + " http"][1], servers[name + " http"][0].pid))

            def echo_load(port):
                r = builtin_tls_client(kind="echo", port=port, conns=args.echo_clients,
                                       depth=depth, duration=args.duration, cafile=cafile,
                                       size=ECHO_SIZE, hostname=HOSTNAME)
                return r["rate"], r["requests"], {
                    "client_cpu": r["client_cpu"], "verified_bytes": r["verified_bytes"],
                    "tls_version": r["tls_version"], "cipher": r["cipher"],
                    "mib_per_s": r["rate"] * ECHO_SIZE / 2**20}

            def https_load(port):
                if use_wrk:
                    rate, n = wrk_https(port, args.clients, args.duration)
                    return rate, n, {}
                r = builtin_tls_client(kind="http", port=port, conns=args.clients, depth=1,
                                       duration=args.duration, cafile=cafile, hostname=HOSTNAME)
                return r["rate"], r["requests"], {
                    "client_cpu": r["client_cpu"], "verified_bytes": r["verified_bytes"],
                    "tls_version": r["tls_version"], "cipher": r["cipher"]}

            cases = [
                (ECHO_CASE, "", echo_load, "req/s",
                 {"depth": depth, "conns": args.echo_clients, "load": "built-in"}),
                (HTTPS_CASE, " http", https_load, "req/s",
                 {"conns": args.clients, "load": "wrk" if use_wrk else "built-in"}),
            ]
            for case, suffix, load, unit, fixed in cases:
                samples: Dict[str, List[Any]] = {name: [] for name in running}
                for _ in range(rounds):
                    for name in running:
                        proc, port = servers[name + suffix]
                        try:
                            samples[name].append(_measure(proc.pid, lambda: load(port)))
                        except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
                            run.error("tls/%s/%s" % (name, case), exc)
                for name in running:
                    got = samples[name]
                    if not got:
                        continue
                    rate, rate_min, rate_max = _summary([g[0] for g in got])
                    cpu, cpu_min, cpu_max = _summary([g[1] for g in got])
                    extra = dict(fixed)
                    extra.update({
                        "rounds": len(got), "rates": [g[0] for g in got],
                        "rate_min": rate_min, "rate_max": rate_max,
                        "cpu_us_min": cpu_min, "cpu_us_max": cpu_max,
                        "requests": sum(g[2] for g in got),
                    })
                    for key in ("client_cpu", "mib_per_s"):
                        values = [g[3][key] for g in got if key in g[3]]
                        if values:
                            extra[key] = statistics.median(values)
                    if any("verified_bytes" in g[3] for g in got):
                        extra["verified_bytes"] = sum(g[3].get("verified_bytes", 0) for g in got)
                    for key in ("tls_version", "cipher"):
                        if key in got[-1][3]:
                            extra[key] = got[-1][3][key]
                    # one extras dict per round: Run.add takes the medians
                    per_round = [dict(extra, cpu_us=g[1]) for g in got]
                    run.add(SCENARIO, case, name, [g[0] for g in got], unit, per_round)
                    if len(got) > 1:
                        run.progress("    %s/%s: median of %d rounds, range %s-%s req/s, "
                                     "CPU %s-%s us/req" % (case, name, len(got), _fmt(rate_min),
                                                            _fmt(rate_max), _fmt(cpu_min),
                                                            _fmt(cpu_max)))
        finally:
            for proc, _ in servers.values():
                procs.stop(proc)


def _fmt(value):
    if value is None:
        return "-"
    if value >= 1e4:
        return "%.1fk" % (value / 1e3)
    if value >= 100:
        return "%.0f" % value
    return "%.1f" % value


def markdown_table(records):
    """The TLS records as Markdown: median [min-max] rates and CPU, ratios of the medians."""
    recs = [r for r in records if r["scenario"] == SCENARIO]
    impls = [n for n in TLS_IMPLS if any(r["impl"] == n for r in recs)]
    by = {(r["case"], r["impl"]): r for r in recs}
    cases = list(dict.fromkeys(r["case"] for r in recs))
    others = [n for n in ("stdlib", "uvloop", "asyncio", "python", "baseline") if n in impls]
    head = ["case", "metric"] + impls + ["cython vs %s" % n for n in others if "cython" in impls]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for case in cases:
        for metric, lo, hi, better in (("rate", "rate_min", "rate_max", 1),
                                       ("cpu_us", "cpu_us_min", "cpu_us_max", -1)):
            row = [case, "req/s" if metric == "rate" else "CPU us/req"]
            for n in impls:
                r = by.get((case, n))
                if r is None or r.get(metric) is None:
                    row.append("-")
                elif r.get("rounds", 1) > 1:
                    row.append("%s [%s-%s]" % (_fmt(r[metric]), _fmt(r[lo]), _fmt(r[hi])))
                else:
                    row.append(_fmt(r[metric]))
            ours = by.get((case, "cython"))
            if "cython" in impls:
                for n in others:
                    r = by.get((case, n))
                    if ours is not None and r is not None and ours.get(metric) and r.get(metric):
                        row.append("%.2fx" % (ours[metric] / r[metric]))
                    else:
                        row.append("-")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _measure(pid, load):
    """``(rate, cpu_us_per_request, requests, extra)`` of one load run against ``pid``."""
    cpu0 = procs.cpu_seconds(pid)
    rate, requests, extra = load()
    cpu1 = procs.cpu_seconds(pid)
    cpu_us = (cpu1 - cpu0) / requests * 1e6 if requests else None
    return rate, cpu_us, requests, extra


# -- child processes ------------------------------------------------------------

def main(argv):
    """Child entry: ``server SOURCE KIND CERTFILE KEYFILE`` or ``client JSON``."""
    from .worker import MAX_SERVER_SECONDS, _die_with_parent, _ready, _watchdog

    role = argv[0] if argv else ""
    if role == "server":
        _die_with_parent()
        _watchdog(MAX_SERVER_SECONDS)
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        from .tls_servers import run_tls_server

        source, kind, certfile, keyfile = argv[1:5]
        run_tls_server(source, kind, certfile, keyfile, _ready)
        return 0
    if role == "table":
        from .report import upgrade

        with open(argv[1]) as f:
            # upgrade: a file from before the rename names the Python build "pure"
            sys.stdout.write(markdown_table(upgrade(json.load(f))["records"]))
        return 0
    if role == "client":
        _die_with_parent()
        from .tls_client import run_tls_client

        json.dump(run_tls_client(**json.loads(argv[1])), sys.stdout)
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
