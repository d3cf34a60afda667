#!/usr/bin/env bash
# CPython 3.14 / 3.15 for .ci/run and .ci/wheels.sh, on a machine that has
# no such interpreter (pyenv here stops at 3.13).
#
# Usage: .ci/debian-python.sh 3.14|3.15              -> prints the path of a working python3.X
#        .ci/debian-python.sh 3.14|3.15 --venv DIR   -> (re)makes venv DIR with pip, prints DIR/bin/python
#
# Debian unstable ("sid") ships both as binary packages (python3.14 3.14.10,
# python3.15 3.15.2 when this was written; no source packages are served).
# They are linked against sid's C library, newer than Debian 12's, so they are
# not installed into the system: the .deb files are fetched through a private
# apt configuration (its own sources list, lists and cache in a temporary
# directory; the machine's apt state is not touched) and unpacked, together
# with sid's libc and the libraries the stdlib's extension modules use, into
#     ${ASYNCHAT_CORE_PY_CACHE:-${XDG_CACHE_HOME:-~/.cache}/asynchat_core}/debian-python3.X
# The interpreter's ELF loader and RPATH are then pointed into that tree
# (patchelf), so it runs as an ordinary CPython with its own libc.  Later runs
# find the tree and only check it (about a second).  DEBIAN_PYTHON_REFRESH=1
# fetches the packages again (sid moves on: a newer patch release).
#
# Using the result (what .ci/run does):
#   - venv: `--venv DIR` below.  Debian's ensurepip looks for pip's wheel in
#     /usr/share/python-wheels (its python3-pip-whl package), not in the tree,
#     so the venv is made --without-pip and pip is installed from the wheel
#     of sid's python3-pip-whl, unpacked into the tree with the rest;
#   - compiled extensions: CFLAGS=-I<tree>/usr/include, because Debian's
#     pyconfig.h lives in the multiarch folder <tree>/usr/include/<triplet>/.
# Debian packages no free-threaded build (3.14t): that one stays with GitHub CI.
set -euo pipefail

usage() { echo "usage: $0 3.14|3.15 [--venv DIR]" >&2; exit 2; }
ver=${1:-}
case "$ver" in
    3.14 | 3.15) ;;
    *) usage ;;
esac
venv=
if [ $# -gt 1 ]; then
    [ $# -eq 3 ] && [ "$2" = --venv ] || usage
    venv=$3
fi
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
cache=${ASYNCHAT_CORE_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asynchat_core}
tree=$cache/debian-python$ver
py=$tree/usr/bin/python$ver

# the stdlib's extension modules that load shared libraries of their own: if
# they import, every library below was unpacked and found
check() {
    "$1" -I -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, _decimal, hashlib, uuid, readline, venv' \
        >/dev/null 2>&1
}

# make_venv DIR: a venv of the tree's interpreter, with pip from sid's wheel
make_venv() {
    local wheel
    wheel=$(ls "$tree"/usr/share/python-wheels/pip-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$wheel" ] || { echo "debian-python.sh: no pip wheel in $tree" >&2; exit 1; }
    "$py" -m venv --clear --without-pip "$1"
    # pip runs from its own wheel to install itself
    "$1/bin/python" "$wheel/pip" install -q --no-index --disable-pip-version-check "$wheel" >&2
    echo "$1/bin/python"
}

packages=(
    "python$ver" "python$ver-minimal" "python$ver-dev" "python$ver-venv"
    "libpython$ver" "libpython$ver-minimal" "libpython$ver-stdlib" "libpython$ver-dev"
    # the stdlib's test package whole: Debian's libpython3.X-stdlib keeps only
    # test.support and a few files, and CPython 3.11's test_smtplib and
    # test_os import helpers (test.mock_socket, test.mapping_tests) from the
    # running interpreter's package (tests/cpython_suite.py)
    "libpython$ver-testsuite"
    # sid's C library and the libraries of the stdlib's extension modules
    libc6 libgcc-s1 libcrypt1 libssl3t64 libffi8 libexpat1 zlib1g libbz2-1.0 liblzma5
    libzstd1 libsqlite3-0 libuuid1 libreadline8t64 libncursesw6 libtinfo6 libmpdec4
    libdb5.3t64
    # pip's wheel, for the venvs (make_venv)
    python3-pip-whl
)
# the tree records the package list it was made from: a list changed here
# makes the next run fetch again
stamp=$tree/.asynchat_core-packages

if [ "${DEBIAN_PYTHON_REFRESH:-0}" = 0 ] && [ -x "$py" ] && check "$py" \
        && [ "$(cat "$stamp" 2>/dev/null)" = "${packages[*]}" ]; then
    if [ -n "$venv" ]; then make_venv "$venv"; else echo "$py"; fi
    exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if ! command -v patchelf >/dev/null 2>&1; then
    echo "debian-python.sh: installing patchelf" >&2
    "${sudo[@]+"${sudo[@]}"}" apt-get update -q >&2
    "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends patchelf >&2
fi

# The Debian mirror the machine's own apt uses (not its security archive);
# DEBIAN_MIRROR overrides it.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                 /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -oE '(https?|file):[^ ]*/debian/?( |$)' | grep -v security \
             | head -n 1 | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/tmp}/debian-python.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" \
    > "$work/sources.list"
# A private apt: its own sources, lists and cache.  It reads the machine's
# dpkg status read-only (apt needs one); `download` installs nothing.
apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work"
    -o "Dir::Cache::Archives=$work/archives" -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1" -q
)
echo "debian-python.sh: fetching python$ver from $mirror sid" >&2
apt-get "${apt_opts[@]}" update >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}" >&2)

# unpack beside the final place, then swap: an interrupted run leaves no
# half-made tree behind for the next run to trust
rm -rf "$tree.new"
mkdir -p "$tree.new"
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tree.new"
done
printf '%s\n' "${packages[*]}" > "$tree.new/.asynchat_core-packages"
loader=$(cd "$tree.new" && ls usr/lib64/ld-linux-*.so.* lib64/ld-linux-*.so.* \
             "usr/lib/$triplet"/ld-linux-*.so.* 2>/dev/null | head -n 1 || true)
[ -n "$loader" ] || { echo "debian-python.sh: no ELF loader in sid's libc6" >&2; exit 1; }
rm -rf "$tree"
mv "$tree.new" "$tree"
# the loader by its final path, and sid's libraries before the machine's
patchelf --set-interpreter "$tree/$loader" --force-rpath \
    --set-rpath "$tree/usr/lib/$triplet:$tree/lib/$triplet" "$py"
check "$py" || { "$py" -I -c 'import ssl, sqlite3, ctypes, lzma, bz2, _decimal' >&2; exit 1; }
echo "debian-python.sh: $("$py" -V) in $tree" >&2
if [ -n "$venv" ]; then make_venv "$venv"; else echo "$py"; fi
