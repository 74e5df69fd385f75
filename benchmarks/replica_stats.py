"""What a replica is, measured: where its segments come from and how its features differ from
an original video's (issue 14, "why Replicate and Link lower accuracy here").

    python benchmarks/replica_stats.py --data DIR [--seed 0] [--draws 3]

Draws `--draws` replicas of every training video with the sampler training uses (Algorithm 1,
data/subevents.py) and reports, against the originals:
- sources: how many videos a replica is stitched from, how many are a whole other video
  (one source, segments 0..9 in place), and how the draws spread over the training videos;
- features, standardised with the training split's mean and std as the model sees them:
  the cosine similarity of adjacent segments (within a run of one label, and at a border
  between two labels), split for replicas into pairs from one source video and stitch pairs
  from two, and the spread of a video's segments around its own mean;
- Link, at the graph's input: eq 12 averages a node's neighbours under each relation, and a
  linked graph (eqs 17-21) gives every node two neighbours per relation, one in the original
  and one in the replica, where a test video's graph has one. The size (root mean square over
  nodes and features) of that average with link edges, against the one neighbour a test graph
  gives, per relation kind, for the first draw of replicas.
The first part depends only on the labels (the same on the real AVE labels as on synthetic
data made from them); the second depends on the features, so on synthetic data it describes
the generator, not AVE.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from avel_dgl.data.dataset import load_split
from avel_dgl.data.subevents import ReplicaSampler, build_database
from avel_dgl.format import BACKGROUND


def standardised(x: torch.Tensor) -> np.ndarray:
    """(N, T, D) features as z-scores over the split's segments, as `--input-norm standardize`."""
    flat = x.reshape(-1, x.shape[-1]).double()
    return ((x.double() - flat.mean(0)) / flat.std(0).clamp_min(1e-8)).numpy()


def adjacent_cosine(feats: np.ndarray) -> np.ndarray:
    """(N, T-1): cosine similarity of segments t and t+1 of each video."""
    a, b = feats[:, :-1], feats[:, 1:]
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def spread(feats: np.ndarray) -> float:
    """Mean over videos of the mean squared distance of a video's segments to its own mean,
    per feature dimension (1.0 would be the whole split's variance)."""
    return float(((feats - feats.mean(1, keepdims=True)) ** 2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=3, help="replicas drawn per training video")
    args = ap.parse_args()

    train = load_split(args.data, "train")
    sampler = ReplicaSampler(train, build_database(train), args.seed)
    n, t = train.segment_labels.shape
    index = torch.arange(n)
    draws = [sampler.sample(index) for _ in range(args.draws)]
    src_video = np.concatenate([v.numpy() for v, _ in draws])  # (draws*N, T) source video positions
    src_segment = np.concatenate([s.numpy() for _, s in draws])
    labels = np.tile(train.segment_labels.numpy(), (args.draws, 1))
    own = np.tile(np.arange(n)[:, None], (args.draws, t))

    # --- Sources (labels only) ----------------------------------------------------------------
    sources = np.array([len(set(row)) for row in src_video])
    whole = (sources == 1) & (src_segment == np.arange(t)).all(1) & (src_video[:, 0] != own[:, 0])
    copied_segments = (src_video == own).mean()
    full_event = (train.segment_labels.numpy() != BACKGROUND).all(1)
    use = np.bincount(src_video.ravel(), minlength=n) / (args.draws * t)  # segments drawn per video per draw
    print(f"training videos: {n}; replicas drawn: {len(src_video)} ({args.draws} per video, seed {args.seed})")
    print(f"videos whose event fills all {t} segments: {full_event.mean():.1%}")
    print(f"replicas from one source video: {(sources == 1).mean():.1%}; of which a whole other video in place: "
          f"{whole.mean():.1%} of all replicas")
    print(f"source videos per replica: mean {sources.mean():.2f}, max {sources.max()}; "
          f"segments copied from the original itself: {copied_segments:.2%}")
    print(f"share of replica segments drawn from full-event videos: {full_event[src_video].mean():.1%} "
          f"(their share of original segments: {full_event.mean():.1%})")
    print(f"segments drawn per video per epoch (1.0 = uniform): median {np.median(use):.2f}, "
          f"p90 {np.quantile(use, 0.9):.2f}, max {use.max():.2f}, never drawn {(use == 0).mean():.1%} of videos")

    # --- Features ------------------------------------------------------------------------------
    stitch = src_video[:, 1:] != src_video[:, :-1]  # adjacent replica segments from two videos
    same_label = labels[:, 1:] == labels[:, :-1]  # replicas keep their original's labels
    orig_same = same_label[:n]
    print(f"\nadjacent pairs in replicas that are stitches (two source videos): {stitch.mean():.1%}; "
          f"within one label run: {stitch[same_label].mean():.1%}, at a label border: {stitch[~same_label].mean():.1%}")
    print("cosine similarity of adjacent segments (standardised features), mean:")
    print("| modality | original, same label | original, label border | replica, same label, one source | "
          "replica, same label, stitch | replica, label border | within-video spread original / replica |")
    print("|---|---:|---:|---:|---:|---:|---|")
    z_by_modality = {name: standardised(x) for name, x in (("audio", train.audio), ("visual", train.visual))}
    for name, z in z_by_modality.items():
        original = adjacent_cosine(z)
        replica = adjacent_cosine(z[src_video, src_segment])
        print(f"| {name} | {original[orig_same].mean():.3f} | {original[~orig_same].mean():.3f} | "
              f"{replica[same_label & ~stitch].mean():.3f} | {replica[same_label & stitch].mean():.3f} | "
              f"{replica[~same_label].mean():.3f} | {spread(z):.3f} / {spread(z[src_video, src_segment]):.3f} |")

    # --- Link: the size of eq 12's neighbour average, linked (training) against single (test) -----
    video, segment = draws[0]
    rep = {name: f[video.numpy(), segment.numpy()] for name, f in z_by_modality.items()}
    print("\nsize of eq 12's neighbour average (root mean square) with link edges against a test video's "
          "single neighbour, first draw:")
    print("| into | relation | one neighbour (test) | original + replica neighbour (linked training) | ratio |")
    print("|---|---|---:|---:|---:|")
    kinds = {"forward": lambda f: f[:, :-1], "backward": lambda f: f[:, 1:], "cross-modal": lambda f: f}
    for into, source in (("audio", "visual"), ("visual", "audio")):
        for kind, pick in kinds.items():
            src = source if kind == "cross-modal" else into
            single = pick(z_by_modality[src])
            linked = (single + pick(rep[src])) / 2
            rms_single, rms_linked = np.sqrt((single ** 2).mean()), np.sqrt((linked ** 2).mean())
            print(f"| {into} | {kind} ({src} neighbours) | {rms_single:.3f} | {rms_linked:.3f} | "
                  f"{rms_linked / rms_single:.3f} |")


if __name__ == "__main__":
    main()
