#!/usr/bin/env bash
# ASan + UBSan run of the compiled kernels.
#
#   .ci/sanitize.sh                      # Python 3.11, default test selection
#   SAN_PYTHON=3.12.1 .ci/sanitize.sh    # another pyenv interpreter
#   SAN_TESTS="tests/test_limits.py" .ci/sanitize.sh
#   HYPOTHESIS_PROFILE=nightly .ci/sanitize.sh
#
# The extension is built with ASYNCHAT_CORE_DEBUG_BUILD=1 (setup.py adds
# -fsanitize=address,undefined) from a copy of the working tree into its own
# venv, so the in-place build other work uses is never replaced by an
# instrumented one.  CPython itself is not instrumented: libasan is preloaded
# and PYTHONMALLOC=malloc routes every object allocation through ASan's
# malloc so overflows of Python buffers are caught too.
#
# Fails if the build does not produce the compiled kernels, if pytest fails,
# or if ASan/UBSan wrote any report (reports go to $SAN_WORK/reports/).
# Leak detection is off: CPython keeps its own allocations alive at exit,
# which LeakSanitizer reports by the thousand; .ci/valgrind.sh checks leaks
# attributed to our modules instead.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYVER="${SAN_PYTHON:-3.11.7}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
BASE_PY="$PYENV_ROOT/versions/$PYVER/bin/python"
WORK="${SAN_WORK:-/tmp/asynchat_core-sanitize-$PYVER}"
SAN_TESTS="${SAN_TESTS:-tests/test_differential.py tests/test_limits.py tests/test_fuzz_kernels.py tests/test_reentrancy.py tests/test_errno_matrix.py tests/test_loop*.py tests/test_halfclose.py tests/test_hostile_python.py tests/test_legacy_patterns.py tests/test_tls.py tests/test_event_delivery.py tests/test_pinned_rules.py tests/test_framing.py tests/test_proxy_protocol.py}"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"

[ -x "$BASE_PY" ] || { echo "sanitize: no interpreter at $BASE_PY" >&2; exit 2; }
LIBASAN="$(gcc -print-file-name=libasan.so)"
[ -e "$LIBASAN" ] || { echo "sanitize: gcc has no libasan ($LIBASAN)" >&2; exit 2; }
LIBASAN="$(readlink -f "$LIBASAN")"

unset ASYNCHAT_CORE_NO_EXTENSIONS PYTHONPATH VIRTUAL_ENV
export PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$WORK/src" "$WORK/reports"
mkdir -p "$WORK/src" "$WORK/reports"

# A clean copy of the tree: tracked and new files, nothing ignored (no .so).
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
else  # an unpacked sdist or archive
    (cd "$REPO" && tar --exclude='*.so' --exclude='*.c' --exclude=build \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - .) | tar -xf - -C "$WORK/src"
fi

# (the marker names the dependency list: a new list makes a new venv; the
# floors are pyproject.toml's build requirements: an installed older setuptools
# would be kept, and it rejects the SPDX license string)
DEPS=("Cython>=3.3.0,<4" "setuptools>=77.0.3" wheel pytest hypothesis trustme)
DEPS_MARK="$WORK/venv/.deps-$(printf '%s ' "${DEPS[@]}" | cksum | cut -d' ' -f1)"
if [ ! -e "$DEPS_MARK" ]; then
    "$BASE_PY" -m venv --clear "$WORK/venv"
    "$WORK/venv/bin/pip" install -q "${DEPS[@]}"
    touch "$DEPS_MARK"
fi
PY="$WORK/venv/bin/python"

echo "sanitize: building instrumented kernels with Python $PYVER"
(cd "$WORK/src" && ASYNCHAT_CORE_DEBUG_BUILD=1 ASYNCHAT_CORE_REQUIRE_EXTENSIONS=1 \
    "$PY" -m pip install -q --no-build-isolation --no-deps --force-reinstall . ) \
    > "$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; exit 1; }

# Run from the copy's tests with the package taken from the venv, not the
# copy's source directory (pytest is started as a script so '' is not on
# sys.path).
mv "$WORK/src/asynchat_core" "$WORK/src/asynchat_core.src"
cd "$WORK/src"

export PYTHONMALLOC=malloc
export LD_PRELOAD="$LIBASAN"
# detect_leaks=0: see above.  abort_on_error makes a report fatal and visible.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$WORK/reports/asan:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$WORK/reports/ubsan"

impl="$("$PY" -c 'import asynchat_core, asynchat_core._chat_c as c, asynchat_core._loop_c as l; print(asynchat_core.IMPLEMENTATION, c.__file__, l.__file__)')"
echo "sanitize: $impl"
case "$impl" in
    cython\ "$WORK"/venv/*) ;;
    *) echo "sanitize: the instrumented build is not the one imported" >&2; exit 1 ;;
esac
# The module must really be instrumented (linked against the sanitizer runtimes).
so="$("$PY" -c 'import asynchat_core._chat_c as c; print(c.__file__)')"
# (grep without -q: with pipefail, an early exit would SIGPIPE ldd and fail)
env -u LD_PRELOAD ldd "$so" | grep libasan >/dev/null || { echo "sanitize: $so lacks ASan" >&2; exit 1; }

# shellcheck disable=SC2086  # SAN_TESTS is a list of paths/globs
tests=$(ls -d $SAN_TESTS 2>/dev/null || true)
[ -n "$tests" ] || { echo "sanitize: no test files match: $SAN_TESTS" >&2; exit 1; }
echo "sanitize: running" $tests
rc=0
# -s: UBSan writes its reports to stderr whatever log_path says (its runtime
# sits beside the preloaded libasan), so stderr must reach the log uncaptured
# shellcheck disable=SC2086
"$WORK/venv/bin/pytest" -q -s -p no:cacheprovider $tests 2>&1 | tee "$WORK/pytest.log" || rc=$?
if grep -E "runtime error:|ERROR: AddressSanitizer|UndefinedBehaviorSanitizer" "$WORK/pytest.log" \
        > "$WORK/reports/from-stderr" 2>/dev/null; then
    :
else
    rm -f "$WORK/reports/from-stderr"
fi

reports=$(ls "$WORK/reports" 2>/dev/null | wc -l)
if [ "$reports" -ne 0 ]; then
    echo "sanitize: $reports sanitizer report(s):" >&2
    for f in "$WORK/reports"/*; do echo "--- $f" >&2; head -n 60 "$f" >&2; done
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "sanitize: pytest failed (rc=$rc)" >&2
    exit "$rc"
fi
echo "sanitize: OK, zero ASan/UBSan reports"
