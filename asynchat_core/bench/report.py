"""Tables, targets, Markdown and the bar chart of a benchmark run."""
import os

IMPL_ORDER = ("cython", "baseline", "pure", "stdlib", "asyncio", "asyncio-streams", "uvloop",
              "uvloop-streams", "redis-server")
SCENARIO_TITLES = {
    "kernel": "Scenario 1: kernels in process (no sockets)",
    "resp": "Scenario 2: Redis protocol server, 50 clients",
    "echo": "Scenario 3: line echo, 10 clients",
    "http": "Scenario 4: HTTP/1.1 keep-alive, 50 clients",
    "tls": "Scenario 5: TLS 1 KiB line echo (10 clients, a request is a line) and HTTPS keep-alive (50 clients)",
}
# ratio columns: asynchat_core (Cython) against each of these
RATIO_AGAINST = ("stdlib", "baseline", "pure", "asyncio", "asyncio-streams", "uvloop", "uvloop-streams",
                 "redis-server")

# (scenario, case, comparator, metric, op, threshold, label)
TARGETS = [
    ("kernel", "lines32-64k", "stdlib", "rate", ">=", 10, "kernel 32-byte lines, 64 KiB reads"),
    ("kernel", "lines32-4k", "stdlib", "rate", ">=", 4, "kernel 32-byte lines, 4 KiB reads"),
    ("kernel", "records100", "stdlib", "rate", ">=", 5, "kernel 100-byte length-framed records"),
    ("resp", "PING_INLINE -P16", "stdlib", "rate", ">=", 6, "RESP -P16 PING_INLINE"),
    ("resp", "SET -P16", "stdlib", "rate", ">=", 3, "RESP -P16 SET"),
    ("resp", "GET -P16", "stdlib", "rate", ">=", 3, "RESP -P16 GET"),
    ("resp", "PING_INLINE -P16", "uvloop", "rate", ">=", 1, "RESP -P16 PING_INLINE"),
    ("resp", "SET -P16", "uvloop", "rate", ">=", 1, "RESP -P16 SET"),
    ("resp", "GET -P16", "uvloop", "rate", ">=", 1, "RESP -P16 GET"),
    ("resp", "PING_INLINE -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 PING_INLINE"),
    ("resp", "SET -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 SET"),
    ("resp", "GET -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 GET"),
    ("resp", "PING_INLINE -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 PING_INLINE CPU/request"),
    ("resp", "SET -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 SET CPU/request"),
    ("resp", "GET -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 GET CPU/request"),
    ("echo", "1 KiB", "uvloop", "rate", ">=", 1, "line echo 1 KiB"),
    ("echo", "10 KiB", "uvloop", "rate", ">=", 1, "line echo 10 KiB"),
    ("tls", "echo 1 KiB", "stdlib", "rate", ">=", 2, "TLS line echo 1 KiB (stdlib + hand-written mixin)"),
    ("tls", "echo 1 KiB", "uvloop", "rate", ">=", 1, "TLS line echo 1 KiB"),
    ("tls", "HTTPS keep-alive", "uvloop", "rate", ">=", 1, "HTTPS keep-alive"),
]


def _index(records):
    table = {}
    for r in records:
        table[(r["scenario"], r["case"], r["impl"])] = r
    return table


def check_targets(records):
    """Evaluate TARGETS against ``records``: a list of dicts with status met/missed/n/a."""
    table = _index(records)
    out = []
    for scenario, case, other, metric, op, threshold, label in TARGETS:
        ours = table.get((scenario, case, "cython"))
        theirs = table.get((scenario, case, other))
        item = {"target": "%s: asynchat_core %s %gx %s%s" % (
            label, op, threshold, other, " (CPU us/request)" if metric == "cpu_us" else ""),
            "ratio": None, "status": "n/a"}
        if ours is None or theirs is None or not ours.get(metric) or not theirs.get(metric):
            if ours is None and theirs is None:
                item["status"] = "not run"
            else:
                item["status"] = "n/a (no %s figure)" % ("asynchat_core" if ours is None else other)
        else:
            ratio = ours[metric] / theirs[metric]
            item["ratio"] = ratio
            ok = ratio >= threshold if op == ">=" else ratio <= threshold
            item["status"] = "met" if ok else "missed"
        out.append(item)
    return out


def _fmt_rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e3:
        return "%.1fk" % (value / 1e3)
    return "%.0f" % value


def _fmt_ratio(value):
    return "-" if value is None else "%.2fx" % value


def scenario_tables(records):
    """Yield ``(title, header, rows)`` for each scenario and metric present."""
    table = _index(records)
    scenarios = []
    for r in records:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    for scenario in scenarios:
        recs = [r for r in records if r["scenario"] == scenario]
        cases = []
        for r in recs:
            if r["case"] not in cases:
                cases.append(r["case"])
        impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in recs)]
        ratio_cols = [i for i in RATIO_AGAINST if i in impls] if "cython" in impls else []
        unit = recs[0]["unit"]
        header = ["case"] + impls + ["vs %s" % i for i in ratio_cols]
        rows = []
        for case in cases:
            row = [case]
            for impl in impls:
                r = table.get((scenario, case, impl))
                row.append(_fmt_rate(r["rate"]) if r else "-")
            ours = table.get((scenario, case, "cython"))
            for impl in ratio_cols:
                r = table.get((scenario, case, impl))
                row.append(_fmt_ratio(ours["rate"] / r["rate"]) if ours and r and r["rate"] else "-")
            rows.append(row)
        yield "%s (%s; ratio = asynchat_core Cython / other)" % (SCENARIO_TITLES[scenario], unit), header, rows
        if any(r.get("cpu_us") for r in recs):
            header = ["case"] + impls + ["vs %s" % i for i in ratio_cols]
            rows = []
            for case in cases:
                row = [case]
                for impl in impls:
                    r = table.get((scenario, case, impl))
                    row.append("%.1f" % r["cpu_us"] if r and r.get("cpu_us") else "-")
                ours = table.get((scenario, case, "cython"))
                for impl in ratio_cols:
                    r = table.get((scenario, case, impl))
                    ok = ours and r and ours.get("cpu_us") and r.get("cpu_us")
                    row.append(_fmt_ratio(ours["cpu_us"] / r["cpu_us"]) if ok else "-")
                rows.append(row)
            yield ("%s: server CPU microseconds per request (lower is better)"
                   % SCENARIO_TITLES[scenario]), header, rows
        if scenario == "kernel" and any("sends_per_frame" in r for r in recs):
            header = ["case"] + impls
            rows = []
            for case in cases:
                row = [case]
                for impl in impls:
                    r = table.get((scenario, case, impl))
                    row.append("%.4f" % r["sends_per_frame"] if r and "sends_per_frame" in r else "-")
                if any(c != "-" for c in row[1:]):
                    rows.append(row)
            yield "%s: send() calls per frame" % SCENARIO_TITLES[scenario], header, rows


def _text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _targets_rows(targets):
    return [[t["target"], _fmt_ratio(t["ratio"]), t["status"]] for t in targets]


def render_text(records, targets, skipped, errors, env):
    """The terminal report."""
    out = ["", "asynchat_core %s on Python %s, %s" % (env["asynchat_core"], env["python"],
                                                     env["machine"])]
    for name, label in env["implementations"].items():
        out.append("  %-8s %s" % (name, label))
    for title, header, rows in scenario_tables(records):
        out += ["", title, _text_table(header, rows)]
    if targets:
        out += ["", "Targets", _text_table(["target", "ratio", "status"], _targets_rows(targets))]
    if skipped:
        out += ["", "Skipped"] + ["  %s: %s" % kv for kv in skipped.items()]
    if errors:
        out += ["", "Errors"] + ["  " + e for e in errors]
    return "\n".join(out) + "\n"


NOTES_MARKER = "<!-- notes: everything below this line is kept when the file is regenerated -->"


def render_markdown(path, data):
    """Write BENCHMARKS.md; hand-written notes after NOTES_MARKER are kept."""
    notes = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1].lstrip("\n")
    env = data["environment"]
    out = [
        "# Benchmarks",
        "",
        "Generated by `%s --markdown BENCHMARKS.md` on %s (%.0f s); the default run is "
        "`python -m asynchat_core.bench --markdown BENCHMARKS.md`." % (
            data["command"], env["date"], data["seconds"]),
        "",
        "Ratios are the headline: every figure in a table was measured side by side in one run "
        "on a shared machine; absolute rates are context only. \"vs X\" is asynchat_core "
        "(Cython kernels) divided by X; for CPU per request lower is better.",
        "",
        "- Machine: %s" % env["machine"],
        "- Python %s, asynchat_core %s%s" % (
            env["python"], env["asynchat_core"],
            " (git %s)" % env["git"] if env.get("git") else ""),
    ]
    for key in ("redis-server", "redis-benchmark", "wrk"):
        if env.get(key):
            out.append("- %s: `%s`" % (key, env[key]))
    out.append("- Implementations:")
    for name, label in env["implementations"].items():
        out.append("  - `%s`: %s" % (name, label))
    if data["targets"]:
        out += ["", "## Targets", "", _md_table(["target", "ratio", "status"],
                                                _targets_rows(data["targets"]))]
    for title, header, rows in scenario_tables(data["records"]):
        out += ["", "## " + title, "", _md_table(header, rows)]
    if data["skipped"]:
        out += ["", "## Skipped", ""] + ["- %s: %s" % kv for kv in data["skipped"].items()]
    if data["errors"]:
        out += ["", "## Errors", ""] + ["- " + e for e in data["errors"]]
    out += ["", NOTES_MARKER, "", notes.rstrip("\n")]
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip("\n") + "\n")


def write_plot(path, records):
    """Bar chart: one panel per scenario, rates relative to asynchat_core (Cython)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _index(records)
    scenarios = []
    for r in records:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 3.2 * len(scenarios)), squeeze=False)
    for ax, scenario in zip(axes[:, 0], scenarios):
        recs = [r for r in records if r["scenario"] == scenario]
        cases = list(dict.fromkeys(r["case"] for r in recs))
        impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in recs)]
        width = 0.8 / max(1, len(impls))
        for k, impl in enumerate(impls):
            values = [table[(scenario, c, impl)]["rate"] if (scenario, c, impl) in table else 0
                      for c in cases]
            ax.bar([i + k * width for i in range(len(cases))], values, width, label=impl)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
        ax.set_xticklabels(cases, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(recs[0]["unit"])
        ax.set_title(SCENARIO_TITLES[scenario], fontsize=10)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
