#!/usr/bin/env bash
# darknet_py with OpenCV 5, in a virtual environment of its own: the package imports, trains and
# detects with OpenCV 5, and cv2.dnn.readNetFromONNX runs an exported yolov4-tiny like ONNX Runtime
# (tests/opencv5). The main suite keeps OpenCV 4, whose darknet importer it compares against.
#
#   bash .ci/opencv5_check.sh [WHEEL]     # WHEEL: install this built wheel; default: build from the tree
set -euo pipefail
. "$(dirname "$0")/fresh_venv.sh" opencv5
PACKAGE="${1:-$ROOT}"
"$VENV/bin/python" -m pip install --quiet "$PACKAGE" "opencv-python-headless>=5" "onnx>=1.14" "onnxruntime>=1.16" \
    "pytest>=7"
"$VENV/bin/python" -c 'import cv2, darknet_py; print("opencv5_check: OpenCV", cv2.__version__, "darknet_py", darknet_py.__version__)'
cd "$ROOT"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/opencv5
