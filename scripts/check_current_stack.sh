#!/usr/bin/env bash
# The current stack, tested: a second virtual environment (.venv-current, git-ignored) with the
# newest torch, torchvision and torchaudio that PyPI serves for this machine and numpy 2, without
# DGL (PyPI's DGL 2.1.0 imports only with torch<=2.2.1 and numpy<2), avel-dgl installed into it
# within pyproject.toml's ranges, and the whole test suite run there: tests that need DGL skip,
# naming it; every other test runs eq 12 on the torch kernel.
#
#   scripts/check_current_stack.sh [pytest arguments]
#
# pip takes the newest releases this machine may install: where pip is capped (/etc/xdg/pip on
# these machines: torch<=2.14.1, torchvision<=0.29.1, the releases on their disk) the cap's, else
# PyPI's newest. torchaudio 2.10 and later declare no exact torch; 2.9 and later have no VGGish
# prototype (the project defines VGGish itself; only the test comparing the two then skips). PYTHON picks the
# interpreter (python3; a Python 3.12 works the same where one is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-current}
PY="$VENV/bin/python"

[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q --upgrade torch torchvision torchaudio "numpy>=2" -e ".[test]"
if "$PY" -c "import dgl" 2>/dev/null; then
    echo "check_current_stack: DGL imports in $VENV; this script tests the stack without it" >&2
    exit 1
fi
"$PY" - <<'EOF'
from importlib import metadata
import sys
names = ["torch", "torchvision", "torchaudio", "numpy", "av", "pandas", "h5py", "click", "tqdm", "matplotlib", "pytest"]
print("check_current_stack: Python " + sys.version.split()[0] + "; "
      + ", ".join(f"{n} {metadata.version(n)}" for n in names) + "; no DGL")
EOF
"$PY" -m pytest -q -p no:cacheprovider "$@"
