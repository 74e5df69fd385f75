"""Difficulty check of the synthetic data (docs/SYNTHETIC.md, "Calibration"); not a test.

Generates a dataset, then measures test-segment accuracy (against right_labels.h5) of:
  single-LR    multinomial logistic regression on one segment's [audio, pooled visual]
  single-NCM   nearest class mean on the same standardized features
  context-MLP  a small MLP on [segment, previous, next, video mean] features
  vote+agree   video class = summed single-LR log-probabilities over the video; a segment is an
               event when both its audio and its visual evidence for that class (projection on
               the class's mean train event segment) clear thresholds fit on train
  +fill        also call a lone gap between two event segments an event (spans are contiguous)
  oracle+agree the same rule given the true video class

Usage: python scripts/calibrate_synthetic.py [--videos 1200] [--seed 0] [--data DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import torch

from avel_dgl.data.dataset import load_split
from avel_dgl.data.synthetic import KNOBS, make_synthetic
from avel_dgl.format import BACKGROUND, N_CLASSES, N_EVENTS


def fit_linear(x, y, classes, epochs=300, weight_decay=1e-4):
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(layer(x), y).backward()
        opt.step()
    return layer


def fit_mlp(x, y, classes, epochs=200):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(128, classes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        net.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    return net


def segments(split, mean, std):
    x = torch.cat([split.audio, split.visual], -1)
    return (x - mean) / std  # (N, T, 640)


def context(x):
    prev = torch.cat([x[:, :1], x[:, :-1]], 1)
    nxt = torch.cat([x[:, 1:], x[:, -1:]], 1)
    return torch.cat([x, prev, nxt, x.mean(1, keepdim=True).expand_as(x)], -1)


def templates(x, y, video_labels):
    """Per class: mean of its train event segments minus the mean of all train segments."""
    base = x.reshape(-1, x.shape[-1]).mean(0)
    t = torch.stack([x[y == c].mean(0) - base for c in range(N_EVENTS)])
    return t / (t * t).sum(-1, keepdim=True)  # evidence ~1 when the class signal is present


def evidence(x, template, video_class):
    return (x * template[video_class][:, None, :]).sum(-1)  # (N, T)


def agree(sa, sv, ta, tv, video_class, fill):
    event = (sa > ta) & (sv > tv)
    if fill:  # spans are contiguous: a lone gap between two event segments is an event too
        inner = event[:, :-2] & event[:, 2:]
        event = event.clone()
        event[:, 1:-1] |= inner
    return torch.where(event, video_class[:, None], torch.full_like(video_class[:, None], BACKGROUND))


def fit_thresholds(sa, sv, video_class, y, fill):
    grid = torch.linspace(-0.5, 1.5, 41)
    return max(((agree(sa, sv, ta, tv, video_class, fill) == y).float().mean().item(), ta.item(), tv.item())
               for ta in grid for tv in grid)[1:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="an existing synthetic folder instead of generating one")
    p.add_argument("--knob", action="append", default=[], help="override a Knobs field, e.g. audio_noise=0.8")
    args = p.parse_args()
    overrides = {k: float(v) for k, v in (item.split("=") for item in args.knob)}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_synthetic(f"{tmp}/data", videos=args.videos, seed=args.seed, visual_dtype="float32",
                                           knobs=dataclasses.replace(KNOBS, **overrides))
        train, val, test = load_split(data, "train"), load_split(data, "val"), load_split(data, "test", "c-ave")
    audio_dim = train.audio.shape[-1]
    flat = torch.cat([train.audio, train.visual], -1).reshape(-1, audio_dim + train.visual.shape[-1])
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    xtr, xva, xte = segments(train, mean, std), segments(val, mean, std), segments(test, mean, std)
    ytr, yva, yte = train.segment_labels, val.segment_labels, test.segment_labels
    d = xtr.shape[-1]
    acc = lambda pred: (pred == yte).float().mean().item()
    print(f"videos train {len(train)} test {len(test)}; test background share "
          f"{(yte == BACKGROUND).float().mean().item():.3f} (all-background guess scores that)")

    # Weight decay chosen on val, so the single-segment model is not handicapped by overfitting.
    fits = [fit_linear(xtr.reshape(-1, d), ytr.reshape(-1), N_CLASSES, weight_decay=wd) for wd in (1e-4, 1e-3, 1e-2)]
    with torch.no_grad():
        lr = max(fits, key=lambda m: (m(xva).argmax(-1) == yva).float().mean().item())
        print(f"single-LR    {acc(lr(xte).argmax(-1)):.3f}  (train {(lr(xtr).argmax(-1) == ytr).float().mean().item():.3f})")
    centroids = torch.stack([xtr[ytr == c].mean(0) for c in range(N_CLASSES)])
    print(f"single-NCM   {acc(torch.cdist(xte.reshape(-1, d), centroids).argmin(-1).reshape(yte.shape)):.3f}")
    la = fit_linear(xtr[..., :audio_dim].reshape(-1, audio_dim), ytr.reshape(-1), N_CLASSES)
    lv = fit_linear(xtr[..., audio_dim:].reshape(-1, d - audio_dim), ytr.reshape(-1), N_CLASSES)
    with torch.no_grad():
        print(f"audio-only-LR {acc(la(xte[..., :audio_dim]).argmax(-1)):.3f}  "
              f"visual-only-LR {acc(lv(xte[..., audio_dim:]).argmax(-1)):.3f}")

    ctr, cte = context(xtr), context(xte)
    mlp = fit_mlp(ctr.reshape(-1, ctr.shape[-1]), ytr.reshape(-1), N_CLASSES)
    with torch.no_grad():
        print(f"context-MLP  {acc(mlp(cte).argmax(-1)):.3f}")
        vote = lambda x: torch.log_softmax(lr(x), -1)[..., :N_EVENTS].sum(1).argmax(-1)
        vtr, vte = vote(xtr), vote(xte)
        print(f"video class by vote: test accuracy {(vte == test.video_labels).float().mean().item():.3f}")
        ta, tv = templates(xtr[..., :audio_dim], ytr, None), templates(xtr[..., audio_dim:], ytr, None)
        for name, ctr_, cte_ in (("vote", vtr, vte), ("oracle", train.video_labels, test.video_labels)):
            sa_tr, sv_tr = evidence(xtr[..., :audio_dim], ta, ctr_), evidence(xtr[..., audio_dim:], tv, ctr_)
            sa_te, sv_te = evidence(xte[..., :audio_dim], ta, cte_), evidence(xte[..., audio_dim:], tv, cte_)
            for fill in (False, True):
                th = fit_thresholds(sa_tr, sv_tr, ctr_, ytr, fill)
                label = f"{name}+agree" + ("+fill" if fill else "")
                print(f"{label:18s} {acc(agree(sa_te, sv_te, *th, cte_, fill)):.3f}  thresholds {th[0]:.2f} {th[1]:.2f}")

if __name__ == "__main__":
    main()
