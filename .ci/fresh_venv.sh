# Sourced by the checks that need a virtual environment of their own (opencv5_check.sh,
# onednn_check.sh): sets ROOT (the tree) and VENV (a new venv with an up-to-date pip, removed
# when the script exits).
#
#   . "$(dirname "$0")/fresh_venv.sh" NAME     # NAME: part of the venv's directory name
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(mktemp -d "${TMPDIR:-/tmp}/darknet_py_$1.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
