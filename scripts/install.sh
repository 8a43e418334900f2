#!/usr/bin/env bash
# Create .venv and install radroute with its test tools. CPU torch pair pinned here only;
# pyproject.toml keeps torch loose so GPU users bring their own build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# pinned for CI: radroute.routing.net wraps two private pynetdicom methods (tests/routing/test_net.py)
.venv/bin/python -m pip install -q "pynetdicom==3.0.4"
.venv/bin/python -m pip install -q -e ".[dev]"
