#!/usr/bin/env bash
# darknet_py built with DARKNET_PY_ONEDNN=1 (bf16 inference as one oneDNN graph), in a virtual
# environment of its own: pip's isolated build gets the onednn-cpu-gomp and onednn-devel-cpu-gomp
# wheels from build_backend/darknet_py_backend.py, the installed package loads libdnnl from the
# environment, and tests/test_precision.py (the float64 formula on bf16 operands for every
# convolution shape, whole networks against fp32, the trained demo's mAP and boxes) runs on it.
# Then the same tests but the slow one under ASan + UBSan + LeakSanitizer. Where the CPU lacks
# AVX512-BF16 the bf16 tests skip and only the builds and the import are checked.
#
#   bash .ci/onednn_check.sh
set -euo pipefail
. "$(dirname "$0")/fresh_venv.sh" onednn
DARKNET_PY_ONEDNN=1 "$VENV/bin/python" -m pip install --quiet "$ROOT[test]"
"$VENV/bin/python" - <<'PY'
import darknet_py as dn
backend = dn.bf16_backend()
print("onednn_check:", backend, "| bf16 on this CPU:", dn.precision_supported("bf16"))
assert backend.startswith("oneDNN "), backend
PY
cd "$ROOT"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_precision.py

# The same build with ASan + UBSan + LeakSanitizer (a copy of the tree, on PYTHONPATH), on the
# fast bf16 tests: the graph's primitives and memories are all released, nothing is read out of
# bounds (as .ci/hardening_check.sh does for the default build).
# (its headers as the build backend pins them, ONEDNN_BUILD, for build_ext.py outside pip)
"$VENV/bin/python" -m pip install --quiet $("$VENV/bin/python" -c \
    'import sys; sys.path.insert(0, "build_backend"); import darknet_py_backend as b; print(*b.ONEDNN_BUILD)')
mkdir "$VENV/tree"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null \
    | tar -xf - -C "$VENV/tree"
(cd "$VENV/tree" && DARKNET_PY_ONEDNN=1 DARKNET_PY_SANITIZE=address,undefined "$VENV/bin/python" build_ext.py > /dev/null)
ASAN_LIB=$(gcc -print-file-name=libasan.so)
cd "$VENV/tree"
PYTHONPATH="$VENV/tree/src" LD_PRELOAD="$ASAN_LIB" \
    ASAN_OPTIONS="detect_leaks=1:exitcode=23:abort_on_error=0" \
    LSAN_OPTIONS="suppressions=$ROOT/.ci/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_precision.py -m "not slow"
