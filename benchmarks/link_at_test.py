"""What a network trained with Link reads from the replica: its test accuracy when each test
video is linked, as in training, to a replica (issue 14, "why Link lowers accuracy here").

    python benchmarks/link_at_test.py --data DIR RUN [RUN ...] [--draws 3] [--seed 0]

Each RUN is a training run folder with best.pt. The test videos (O-AVE labels) are classified
four ways, and the accuracy is over the test videos' own segments:
- plain: each video alone, as every evaluation does (matches the run's results.json);
- own labels: linked (eqs 17-21) to a replica drawn by Algorithm 1 for the video's own segment
  labels from the training videos' sub-events, the pairing Link trains with. The replica's
  content says what the labels are, which no test video can have;
- other labels: linked to a replica drawn for another test video's labels (a fixed
  derangement), so the replica's content points at the wrong labels;
- itself: linked to a copy of itself, which adds no information; under the paper's mean it is
  the plain graph, under `--neighbour-norm sqrt` it scales each relation's input by sqrt(2).
If the linked network reads the label from its replica, `own labels` is far above plain and
`other labels` far below. Replica accuracy is averaged over `--draws` draws, the same draws for
every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from avel_dgl import graph
from avel_dgl.engine import load_model
from avel_dgl.data.dataset import SplitData, load_split
from avel_dgl.data.subevents import ReplicaSampler, build_database
from avel_dgl.engine import batch_indices, predict_logits
from avel_dgl.metrics import global_accuracy
from avel_dgl.runtime import Runtime


@torch.no_grad()
def linked_predictions(model, test: SplitData, partner_audio: torch.Tensor, partner_visual: torch.Tensor,
                       batch_size: int) -> torch.Tensor:
    """(N, T) predictions for the test videos, each linked to partner video i (originals then
    partners in one linked batch, as training builds them)."""
    preds = []
    for index in batch_indices(len(test), batch_size, None):
        audio = torch.cat([test.audio[index], partner_audio[index]])
        visual = torch.cat([test.visual[index], partner_visual[index]])
        logits = model(graph.batch_graph(2 * len(index), linked=True), audio, visual)
        preds.append(logits[: len(index)].argmax(-1))
    return torch.cat(preds)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of range(n) with no fixed point."""
    while True:
        perm = torch.randperm(n, generator=generator)
        if not (perm == torch.arange(n)).any():
            return perm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    train, test = load_split(args.data, "train"), load_split(args.data, "test", "o-ave")
    both = SplitData.concat([train, test])  # test positions follow the training ones
    database = build_database(train)  # sub-events of training videos only
    own = torch.arange(len(train), len(both))
    other = own[derangement(len(test), torch.Generator().manual_seed(args.seed))]
    sampler = ReplicaSampler(both, database, args.seed)  # planned once for every test video
    fresh = sampler.state_dict()
    copied = int(sampler.video_copied[own.numpy()].sum())
    print(f"{len(test)} test videos; replica pieces no training video offers (copied from the video "
          f"itself): {copied}")
    runtime = Runtime.create("cpu")
    print("| run | neighbour norm | plain | own labels | other labels | itself | results.json |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run in args.runs:
        model, config, _ = load_model(run / "best.pt", runtime)
        batch = config.train.batch_size
        plain = global_accuracy(predict_logits(model, test, batch).argmax(-1).cpu(), test.segment_labels)
        accuracy = {}
        sampler.load_state_dict(fresh)  # every run meets the same replicas
        for name, index in (("own", own), ("other", other)):
            accuracy[name] = sum(global_accuracy(linked_predictions(model, test, *sampler(index), batch),
                                                 test.segment_labels) for _ in range(args.draws)) / args.draws
        itself = global_accuracy(linked_predictions(model, test, test.audio, test.visual, batch), test.segment_labels)
        recorded = json.loads((run / "results.json").read_text())["test_acc_o-ave"]
        print(f"| {run} | {config.model.neighbour_norm} | {100 * plain:.2f} | {100 * accuracy['own']:.2f} | "
              f"{100 * accuracy['other']:.2f} | {100 * itself:.2f} | {100 * recorded:.2f} |")


if __name__ == "__main__":
    main()
