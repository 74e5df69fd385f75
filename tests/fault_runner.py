"""Runs the avel-dgl CLI in this process and sends itself a signal while training: when the
training loss of step K (counted from 1 over the whole run) has been computed. The fault tests
run it as a subprocess, so that SIGKILL really kills a training process mid-step:

    python tests/fault_runner.py K SIGKILL train --data DIR --out RUN ...
"""

import os
import signal
import sys

from avel_dgl import engine
from cli.main import main

kill_at, signame = int(sys.argv[1]), sys.argv[2]
original, steps = engine.sel_loss, 0


def sel_loss(*args, **kwargs):
    global steps
    steps += 1
    if steps == kill_at:
        os.kill(os.getpid(), getattr(signal, signame))
    return original(*args, **kwargs)


engine.sel_loss = sel_loss
main(sys.argv[3:], prog_name="avel-dgl")
