#!/usr/bin/env bash
# darknet_py built with DARKNET_PY_ONEDNN=1 (bf16 inference as one oneDNN graph), in a virtual
# environment of its own: pip's isolated build gets the onednn-cpu-gomp and onednn-devel-cpu-gomp
# wheels from build_backend/darknet_py_backend.py, the installed package loads libdnnl from the
# environment, and tests/test_precision.py (the float64 formula on bf16 operands for every
# convolution shape, whole networks against fp32, the trained demo's mAP and boxes) runs on it.
# Where the CPU lacks AVX512-BF16 the bf16 tests skip and only the build and the import are checked.
#
#   bash .ci/onednn_check.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$(mktemp -d "${TMPDIR:-/tmp}/darknet_py_onednn.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
DARKNET_PY_ONEDNN=1 "$VENV/bin/python" -m pip install --quiet "$ROOT[test]"
"$VENV/bin/python" - <<'PY'
import darknet_py as dn
backend = dn.bf16_backend()
print("onednn_check:", backend, "| bf16 on this CPU:", dn.precision_supported("bf16"))
assert backend.startswith("oneDNN "), backend
PY
cd "$ROOT"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_precision.py
