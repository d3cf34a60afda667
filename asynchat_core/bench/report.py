"""Tables, goals, Markdown and the chart of a benchmark run.

A record holds one case of one implementation: ``samples`` has one rate per
round (None for a failed round) and ``rate`` is their median.  A ratio is
taken round by round (both figures of a round were measured back to back),
then summarised as median and min-max; a ratio whose range crosses 1.0 is
"within noise": the rounds disagree about which side is faster.
"""
import os
import re
from typing import Any, Dict

from .impls import current_name

IMPL_ORDER = ("cython", "baseline", "python", "stdlib", "asyncio", "asyncio-streams", "uvloop",
              "uvloop-streams", "redis-server")
# one colour per implementation, the same in every panel of the chart
IMPL_COLOURS = {
    "cython": "#1f77b4", "baseline": "#17becf", "python": "#aec7e8", "stdlib": "#7f7f7f",
    "asyncio": "#ff7f0e", "asyncio-streams": "#ffbb78", "uvloop": "#2ca02c",
    "uvloop-streams": "#98df8a", "redis-server": "#d62728",
}
SCENARIO_TITLES = {
    "kernel": "Scenario 1: chat code in process, no sockets (kernel scenario)",
    "resp": "Scenario 2: Redis protocol server",
    "echo": "Scenario 3: line echo",
    "http": "Scenario 4: HTTP/1.1 keep-alive",
    "tls": "Scenario 5: TLS 1 KiB line echo and HTTPS keep-alive",
    "framing": "Scenario 6: framers (RESP requests, length-prefixed records)",
    "workers": "Scenario 7: 1 vs N worker processes (SO_REUSEPORT), RESP and HTTP keep-alive",
}
WIDTH = 100  # the text report fits a 100-column terminal

# The project's goals, printed only with --goals:
# (scenario, case, comparator, metric, op, threshold, label)
TARGETS = [
    ("kernel", "lines32-64k", "stdlib", "rate", ">=", 10, "chat code 32-byte lines, 64 KiB reads"),
    ("kernel", "lines32-4k", "stdlib", "rate", ">=", 4, "chat code 32-byte lines, 4 KiB reads"),
    ("kernel", "records100", "stdlib", "rate", ">=", 5, "chat code 100-byte records"),
    ("resp", "PING_INLINE -P16", "stdlib", "rate", ">=", 6, "RESP -P16 PING_INLINE"),
    ("resp", "SET -P16", "stdlib", "rate", ">=", 3, "RESP -P16 SET"),
    ("resp", "GET -P16", "stdlib", "rate", ">=", 3, "RESP -P16 GET"),
    ("resp", "PING_INLINE -P16", "uvloop", "rate", ">=", 1, "RESP -P16 PING_INLINE"),
    ("resp", "SET -P16", "uvloop", "rate", ">=", 1, "RESP -P16 SET"),
    ("resp", "GET -P16", "uvloop", "rate", ">=", 1, "RESP -P16 GET"),
    ("resp", "PING_INLINE -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 PING"),
    ("resp", "SET -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 SET"),
    ("resp", "GET -P16", "redis-server", "rate", ">=", 0.5, "stretch: RESP -P16 GET"),
    ("resp", "PING_INLINE -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 PING_INLINE CPU"),
    ("resp", "SET -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 SET CPU"),
    ("resp", "GET -P1", "redis-server", "cpu_us", "<=", 1.2, "RESP -P1 GET CPU"),
    ("echo", "1 KiB", "uvloop", "rate", ">=", 1, "line echo 1 KiB"),
    ("echo", "10 KiB", "uvloop", "rate", ">=", 1, "line echo 10 KiB"),
    ("tls", "echo 1 KiB", "stdlib", "rate", ">=", 2, "TLS line echo 1 KiB (stdlib + hand-written mixin)"),
    ("tls", "echo 1 KiB", "uvloop", "rate", ">=", 1, "TLS line echo 1 KiB"),
    ("tls", "HTTPS keep-alive", "uvloop", "rate", ">=", 1, "HTTPS keep-alive"),
]


def median(values):
    """The median of a non-empty list of numbers."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _samples(record, metric):
    if record is None:
        return []
    key = "samples" if metric == "rate" else "cpu_samples"
    if key in record:
        return record[key]
    return [record.get(metric)]


def ratio(ours, theirs, metric="rate"):
    """``{"median", "min", "max", "n"}`` of ours/theirs round by round, or None."""
    pairs = [a / b for a, b in zip(_samples(ours, metric), _samples(theirs, metric))
             if a is not None and b]
    if not pairs:
        return None
    return {"median": median(pairs), "min": min(pairs), "max": max(pairs), "n": len(pairs)}


def within_noise(stats):
    """True if the rounds disagree about which side is ahead (range crosses 1.0)."""
    return stats["n"] > 1 and stats["min"] <= 1.0 <= stats["max"]


def _index(records):
    return {(r["scenario"], r["case"], r["impl"]): r for r in records}


def check_targets(records):
    """Evaluate the project's goals against ``records`` (medians and ranges)."""
    table = _index(records)
    out = []
    for scenario, case, other, metric, op, threshold, label in TARGETS:
        ours = table.get((scenario, case, "cython"))
        theirs = table.get((scenario, case, other))
        item: Dict[str, Any] = {"target": "%s %s %gx %s" % (label, op, threshold, other),
            "ratio": None, "range": None, "status": "not run"}
        stats = ratio(ours, theirs, metric) if ours and theirs else None
        if stats is not None:
            item["ratio"] = stats["median"]
            item["range"] = [stats["min"], stats["max"]]
            ok = stats["median"] >= threshold if op == ">=" else stats["median"] <= threshold
            item["status"] = "met" if ok else "not met"
        elif ours or theirs:
            item["status"] = "n/a (no %s figure)" % ("asynchat_core" if ours is None else other)
        out.append(item)
    return out


def _fmt_rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e3:
        return "%.1fk" % (value / 1e3)
    if value >= 10:
        return "%.0f" % value
    return "%.2f" % value


def _fmt_ratio(stats):
    return "%.2fx" % stats["median"]


def _fmt_range(lo, hi, fmt):
    return "%s-%s" % (fmt(lo), fmt(hi))


def _scenarios(records):
    return list(dict.fromkeys(r["scenario"] for r in records))


def _title(scenario):
    return SCENARIO_TITLES.get(scenario, "Scenario %s" % scenario)


def _long_table(records, scenario, metric):
    """Rows ``case, implementation, median, min-max, cython/this, min-max, note``."""
    table = _index(records)
    recs = [r for r in records if r["scenario"] == scenario]
    cases = list(dict.fromkeys(r["case"] for r in recs))
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in recs)]
    impls += [i for i in dict.fromkeys(r["impl"] for r in recs) if i not in impls]
    fmt = _fmt_rate if metric == "rate" else (lambda v: "%.1f" % v)
    rows = []
    for case in cases:
        ours = table.get((scenario, case, "cython"))
        first = True
        for impl in impls:
            r = table.get((scenario, case, impl))
            values = [v for v in _samples(r, metric) if v is not None]
            if not values:
                continue
            row = [case if first else "", impl, fmt(median(values)),
                   _fmt_range(min(values), max(values), fmt) if len(values) > 1 else ""]
            first = False
            stats = ratio(ours, r, metric) if ours is not None and impl != "cython" else None
            if stats is None:
                row += ["", "", ""]
            else:
                row += [_fmt_ratio(stats),
                        _fmt_range(stats["min"], stats["max"], lambda v: "%.2f" % v)
                        if stats["n"] > 1 else "",
                        "within noise" if within_noise(stats) else
                        ("1 round" if stats["n"] == 1 else "")]
            rows.append(row)
    return rows


def scenario_tables(records, rounds=None):
    """Yield ``(title, header, rows)`` for each scenario and metric present."""
    for scenario in _scenarios(records):
        recs = [r for r in records if r["scenario"] == scenario]
        unit = recs[0]["unit"]
        n = max(len(r.get("samples", [1])) for r in recs)
        spread = "median of %d round%s" % (n, "" if n == 1 else "s")
        header = ["case", "implementation", unit, "min-max", "cython/this", "min-max", ""]
        yield ("%s: %s, %s; cython/this > 1: asynchat_core (compiled build) is faster"
               % (_title(scenario), unit, spread), header, _long_table(records, scenario, "rate"))
        if any(r.get("cpu_us") for r in recs):
            header = ["case", "implementation", "us/req", "min-max", "cython/this", "min-max", ""]
            yield ("%s: server CPU microseconds per request, %s; cython/this < 1: asynchat_core "
                   "uses less" % (_title(scenario), spread), header,
                   _long_table(records, scenario, "cpu_us"))
        if scenario == "kernel" and any("sends_per_frame" in r for r in recs):
            table = _index(records)
            impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in recs)]
            rows = []
            for case in dict.fromkeys(r["case"] for r in recs):
                row = [case]
                for impl in impls:
                    r = table.get((scenario, case, impl))
                    row.append("%.4f" % r["sends_per_frame"] if r and "sends_per_frame" in r
                               else "-")
                if any(c != "-" for c in row[1:]):
                    rows.append(row)
            yield "%s: send() calls per frame" % _title(scenario), ["case"] + impls, rows


def _wrap(text, width=WIDTH):
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = "%s %s" % (line, word) if line else word
    return lines + [line] if line else lines


def _text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    text_cols = {0, 1}
    lines = ["  ".join((str(c).ljust(w) if i in text_cols or i == len(row) - 1 else str(c).rjust(w))
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _goal_rows(goals):
    rows = []
    for t in goals:
        if t["status"] == "not run":
            continue
        rng = "%.2f-%.2f" % tuple(t["range"]) if t.get("range") else ""
        rows.append([t["target"], "%.2fx" % t["ratio"] if t["ratio"] is not None else "-", rng,
                     t["status"]])
    return rows


GOALS_TITLE = ("The project's own goals (what the maintainers aim for; \"not met\" is a "
               "to-do of the project, not a fault of your installation)")


def _implementation(env):
    return env.get("implementation", "?")


def upgrade(data):
    """``data`` (a ``--json`` file's content) with old implementation names renamed.

    Files written before the rename call the Python build "pure" (records'
    ``impl``, the ``implementations`` of the environment) and the
    implementation in use "kernels"; this returns them in today's terms.
    """
    data = dict(data)
    data["records"] = [dict(r, impl=current_name(r["impl"])) for r in data.get("records", [])]
    env = dict(data.get("environment") or {})
    if "implementations" in env:
        env["implementations"] = {current_name(n): label
                                  for n, label in env["implementations"].items()}
    if "kernels" in env and "implementation" not in env:
        env["implementation"] = env.pop("kernels")
    if env:
        data["environment"] = env
    return data


def _git_text(env):
    if not env.get("git"):
        return "commit unknown (not a git checkout)"
    return "git %s%s" % (env["git"], ", uncommitted changes" if env.get("git_dirty") else "")


def render_text(records, goals, skipped, errors, env):
    """The terminal report; ``goals`` (a check_targets list) is printed if not None."""
    out = [""]
    out += _wrap("asynchat_core %s (%s build, %s) on Python %s, %s" % (
        env["asynchat_core"], _implementation(env), _git_text(env), env["python"],
        env["machine"]))
    for name, label in env["implementations"].items():
        out.append("  %-16s %s" % (name, label))
    for title, header, rows in scenario_tables(records):
        out += [""] + _wrap(title) + [_text_table(header, rows)]
    if records:
        out += [""] + _wrap("\"within noise\": the ratio's range over the rounds crosses 1.0, "
                            "so this run cannot tell which is faster.")
    if goals and _goal_rows(goals):
        out += [""] + _wrap(GOALS_TITLE) + [
            _text_table(["goal", "ratio", "min-max", "status"], _goal_rows(goals))]
    if skipped:
        out += ["", "Skipped"]
        for kv in skipped.items():
            out += _wrap("  %s: %s" % kv)
    if errors:
        out += ["", "Errors"]
        for e in errors:
            out += _wrap("  " + e)
    return "\n".join(out) + "\n"


NOTES_MARKER = "<!-- notes: everything below this line is kept when the file is regenerated -->"
_SECTION = re.compile(r"<!-- python (\d+)\.(\d+) begin -->\n(.*?)<!-- python \1\.\2 end -->\n",
                      re.S)


def _md_section(data):
    env = data["environment"]
    major_minor = ".".join(env["python"].split(".")[:2])
    out = [
        "<!-- python %s begin -->" % major_minor,
        "## Python %s" % major_minor,
        "",
        "`%s --markdown FILE` on %s, %s (%.0f s).  asynchat_core %s, %s build, %s." % (
            data["command"], env["date"], "Python " + env["python"], data["seconds"],
            env["asynchat_core"], _implementation(env), _git_text(env)),
        "",
        "- Machine: %s" % env["machine"],
    ]
    for key in ("redis-server", "redis-benchmark", "wrk"):
        if env.get(key):
            out.append("- %s: `%s`" % (key, env[key]))
    out.append("- Implementations:")
    for name, label in env["implementations"].items():
        out.append("  - `%s`: %s" % (name, label))
    for title, header, rows in scenario_tables(data["records"]):
        out += ["", "### " + title, "", _md_table(header, rows)]
    if data["skipped"]:
        out += ["", "Skipped:", ""] + ["- %s: %s" % kv for kv in data["skipped"].items()]
    if data["errors"]:
        out += ["", "Errors:", ""] + ["- " + e for e in data["errors"]]
    if data.get("goals") and _goal_rows(data["goals"]):
        out += ["", "### " + GOALS_TITLE, "",
                _md_table(["goal", "ratio", "min-max", "status"], _goal_rows(data["goals"]))]
    out += ["", "<!-- python %s end -->" % major_minor, ""]
    return major_minor, "\n".join(out)


def render_markdown(path, data):
    """Write this Python's section of ``path`` (BENCHMARKS.md).

    Sections of other Python versions are kept, newest version first (the
    headline), and so are hand-written notes after NOTES_MARKER.
    """
    notes, sections = "", {}
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            old, notes = old.split(NOTES_MARKER, 1)
            notes = notes.lstrip("\n")
        for m in _SECTION.finditer(old):
            sections[(int(m.group(1)), int(m.group(2)))] = m.group(0)
    version, text = _md_section(data)
    major, minor = version.split(".")
    sections[(int(major), int(minor))] = text
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m asynchat_core.bench --markdown BENCHMARKS.md`, one section per "
        "Python version, newest first; each run replaces its own version's section and keeps "
        "the others (see \"Regenerating\" in the notes below).",
        "",
        "Ratios are the headline: the figures compared were measured side by side, round by "
        "round, in one run on a shared machine; absolute rates are context only. Each figure is "
        "the median over the rounds with its min-max range. \"cython/this\" is asynchat_core "
        "(compiled build) divided by the implementation of the row, computed per round; "
        "\"within noise\" marks a ratio whose range crosses 1.0. For CPU per request lower is "
        "better.",
        "",
    ]
    for key in sorted(sections, reverse=True):
        out.append(sections[key].rstrip("\n"))
        out.append("")
    out += [NOTES_MARKER, "", notes.rstrip("\n")]
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip("\n") + "\n")


def plot_reference(impls):
    """The implementation the chart divides by: the stdlib where it was measured."""
    for name in ("stdlib", "python", "asyncio"):
        if name in impls:
            return name
    return None


def write_plot(path, records, env):
    """Chart: one panel per scenario, each implementation's rate over the stdlib's.

    Linear axis from 0, bars at the median of the per-round ratios, whiskers
    from their minimum to their maximum, a line at 1.0 (the reference), one
    colour per implementation in every panel; the subtitle names Python,
    CPU count, date and commit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _index(records)
    scenarios = _scenarios(records)
    height = 3.0 * len(scenarios) + 1.3  # inches: panels, title block, legend row
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, height), squeeze=False)
    shown: Dict[str, Any] = {}
    for ax, scenario in zip(axes[:, 0], scenarios):
        recs = [r for r in records if r["scenario"] == scenario]
        cases = list(dict.fromkeys(r["case"] for r in recs))
        present = [i for i in IMPL_ORDER if any(r["impl"] == i for r in recs)]
        ref = plot_reference(present)
        if ref is None:
            ax.set_title("%s: no reference implementation measured" % _title(scenario),
                         fontsize=10)
            continue
        impls = [i for i in present if i != ref]
        width = 0.8 / max(1, len(impls))
        top = 1.0
        for k, impl in enumerate(impls):
            xs, heights, low, high = [], [], [], []
            for i, case in enumerate(cases):
                stats = ratio(table.get((scenario, case, impl)), table.get((scenario, case, ref)))
                if stats is None:
                    continue
                xs.append(i - 0.4 + width * (k + 0.5))
                heights.append(stats["median"])
                low.append(stats["median"] - stats["min"])
                high.append(stats["max"] - stats["median"])
                top = max(top, stats["max"])
            if xs:
                bars = ax.bar(xs, heights, width, yerr=[low, high], capsize=2,
                              color=IMPL_COLOURS.get(impl, "#333333"), label=impl,
                              error_kw={"elinewidth": 1, "ecolor": "#222222"})
                shown.setdefault(impl, bars)
        ax.axhline(1.0, color=IMPL_COLOURS.get(ref, "#7f7f7f"), linestyle="--", linewidth=1)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, fontsize=8)
        ax.set_ylim(0, top * 1.12)
        ax.set_ylabel("%s over %s" % (recs[0]["unit"], ref), fontsize=8)
        ax.set_title("%s (dashed line: %s = 1)" % (_title(scenario), ref), fontsize=10)
    if shown:
        order = [i for i in IMPL_ORDER if i in shown] + [i for i in shown if i not in IMPL_ORDER]
        fig.legend(handles=[shown[i] for i in order], labels=order, loc="lower center",
                   ncol=len(shown), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    reference = env.get("implementations", {}).get("stdlib", "the stdlib asynchat")
    fig.suptitle("asynchat_core %s: throughput relative to %s (higher is better)\n"
                 "Python %s, %d CPUs, %s, %s\nbars: median of %s rounds of per-round ratios, "
                 "whiskers: min-max" % (
                     env["asynchat_core"], reference, env["python"], env.get("cpus", 0),
                     env["date"], _git_text(env), env.get("rounds", "?")),
                 fontsize=9, y=1 - 0.08 / height, va="top")
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.55 / height))
    fig.savefig(path, dpi=100)
    plt.close(fig)
