#!/usr/bin/env bash
# valgrind memcheck over the kernel tests, normal (non-sanitizer) build.
#
#   .ci/valgrind.sh                          # Python 3.11 dev venv /tmp/v311
#   VG_PYTHON=/path/to/venv/bin/python .ci/valgrind.sh
#   VG_TESTS="tests/test_limits.py" .ci/valgrind.sh
#
# Uses the interpreter's installed asynchat_core (e.g. the editable install);
# it must import the compiled kernels.  PYTHONMALLOC=malloc makes every
# Python allocation visible to memcheck.  CPython itself produces some
# reports (interned strings and static types alive at exit, "possibly
# lost" GC blocks), so the run fails only on errors or definite leaks whose
# stack passes through our modules (_chat_c / _loop_c).  The full XML is
# kept in $VG_WORK for inspection.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VG_PYTHON:-/tmp/v311/bin/python}"
WORK="${VG_WORK:-/tmp/asynchat_core-valgrind}"
VG_TESTS="${VG_TESTS:-tests/test_limits.py tests/test_chat_kernels.py tests/test_fuzz_kernels.py}"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-dev}"
export ASYNCHAT_CORE_FUZZ_EXAMPLES="${ASYNCHAT_CORE_FUZZ_EXAMPLES:-150}"

command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 2; }
unset ASYNCHAT_CORE_NO_EXTENSIONS
cd "$REPO"
"$PY" -c 'import asynchat_core, sys; sys.exit(asynchat_core.IMPLEMENTATION != "cython")' \
    || { echo "valgrind: $PY does not load the compiled kernels" >&2; exit 1; }

mkdir -p "$WORK"
rm -f "$WORK"/memcheck.*.xml
# shellcheck disable=SC2086
tests=$(ls -d $VG_TESTS 2>/dev/null || true)
[ -n "$tests" ] || { echo "valgrind: no test files match: $VG_TESTS" >&2; exit 1; }
echo "valgrind: memcheck over" $tests

rc=0
# shellcheck disable=SC2086
PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --track-origins=no --num-callers=40 --child-silent-after-fork=yes \
    --xml=yes --xml-file="$WORK/memcheck.%p.xml" \
    "$PY" -m pytest -q -p no:cacheprovider $tests || rc=$?

"$PY" - "$WORK" <<'EOF'
import glob, sys
import xml.etree.ElementTree as ET

ours = ("_chat_c", "_loop_c", "_proxy_c")
bad, total = [], 0
for path in glob.glob(sys.argv[1] + "/memcheck.*.xml"):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        sys.exit("valgrind: unreadable %s: %s" % (path, exc))
    for err in root.iter("error"):
        total += 1
        kind = err.findtext("kind")
        objs = [f.findtext("obj") or "" for f in err.iter("frame")]
        fns = [f.findtext("fn") or "" for f in err.iter("frame")]
        if any(any(o in s for o in ours) for s in objs + fns):
            what = err.findtext("what") or (err.find("xwhat").findtext("text")
                                             if err.find("xwhat") is not None else "")
            bad.append("%s: %s\n    %s" % (kind, what, "\n    ".join(
                "%s (%s)" % (fn, obj.rsplit("/", 1)[-1]) for fn, obj in zip(fns, objs))[:3000]))
print("valgrind: %d report(s) in total, %d in asynchat_core's modules" % (total, len(bad)))
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
[ "$rc" -eq 0 ] || { echo "valgrind: pytest failed (rc=$rc)" >&2; exit "$rc"; }
echo "valgrind: OK"
