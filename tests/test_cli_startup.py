"""The command line starts at once (issue 24): `avel-dgl --help` and every command's --help import
neither torch nor DGL, so what the help shows that the model also knows (the network variants,
the VGG19 weights: avel_dgl.format.VISUAL_WEIGHTS) is defined without them, and agrees with the
model's own lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# In a fresh process: the top-level help, the bare command (also the help), then each command's
# --help, as the `avel-dgl` entry point runs them; then the heavy packages that were loaded.
HELP_EVERYWHERE = """
import json, sys
from cli.main import main

runs = [["--help"], []] + [[name, "--help"] for name in main.commands]
for args in runs:
    try:
        main.main(args, prog_name="avel-dgl")
    except SystemExit as e:
        assert e.code in (0, None), (args, e.code)
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "dgl", "torchvision", "av"})
print(json.dumps({"helped": [r[0] for r in runs[2:]], "loaded": loaded}))
"""


def test_help_of_every_command_imports_neither_torch_nor_dgl():
    done = subprocess.run([sys.executable, "-c", HELP_EVERYWHERE], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"train", "evaluate", "ablate", "check-data", "predict", "extract", "localize"} <= set(report["helped"])
    assert report["loaded"] == []
    assert "Usage: avel-dgl train [OPTIONS]" in done.stdout  # the helps were printed, not skipped


def test_the_help_lists_agree_with_the_model():
    from avel_dgl import config
    from avel_dgl.nn import dpnet

    assert config.VARIANTS == tuple(dpnet.VARIANTS)  # ablate --variants' help, in Table 3's order
