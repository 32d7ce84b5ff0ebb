"""OpenCL C sources, one file per op (`<op>.cl`), entry points `<op>_<variant>`; shipped as package data."""

from pathlib import Path

KERNEL_DIR = Path(__file__).parent
