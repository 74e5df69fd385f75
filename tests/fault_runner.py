"""Runs the avel-dgl CLI in this process and sends itself a signal while training: when the
training loss of step K (counted from 1 over the whole run) has been computed. The fault tests
run it as a subprocess, so that SIGKILL really kills a training process mid-step:

    python tests/fault_runner.py K SIGKILL train --data DIR --out RUN ...
"""

import signal
import sys

import torch

from avel_dgl import engine
from cli.main import main
from helpers import loss_hook, send_signal

torch.set_num_threads(1)  # as conftest.py sets it for the tests' own process

engine.sel_loss = loss_hook(int(sys.argv[1]), send_signal(getattr(signal, sys.argv[2])))
main(sys.argv[3:], prog_name="avel-dgl")
