"""avel-dgl: the Dual Perspective Network (DPNet) for audio-visual event localization on DGL heterographs."""

import os

# DGL picks its tensor backend from this variable and prints a notice when it is unset.
os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
