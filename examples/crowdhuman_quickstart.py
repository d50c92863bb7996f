"""The darknet_py demo as a script: synthesize CrowdHuman-format data, train a small
yolov4-tiny on the CPU, evaluate it and draw its predictions.

    python examples/crowdhuman_quickstart.py [--out DIR] [--quick]

The same as `darknet-py demo ...`; every output goes under DIR (default ./darknet_py_demo).
"""
import sys

from darknet_py.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
