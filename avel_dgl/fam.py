"""Feature activation maps (section 4.2): where in a segment's 7x7 VGG19 grid each relational
polymorph of the first DPBlock's RGCT responds.

The RGCT turns a node into one query vector per relation it receives, Q^r = FC(n; W_Q^r), its
relational polymorphs (section 3.3). DPNet feeds the first RGCT the globally average-pooled
visual features (section 3.2), and a linear map commutes with the average, so applying W_Q^r to
every spatial position of the (input-normalised) 7x7x512 map instead gives a 7x7 field whose
mean is the query the model actually computed. Following the paper, each position is then
summarised by its maximum over the query's channels ("overall maximum activation, to avoid
region inversions"), one 7x7 map per polymorph. Audio nodes have no spatial input of their own;
their polymorphs (W_Q^r of the audio node type) are likewise applied to the segment's visual map,
which is what lets the paper show them on the frame (both live in the same 512-d input space).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend

from avel_dgl import graph
from avel_dgl.engine import load_model
from avel_dgl.outputs import check_output, mark, write_atomic
from avel_dgl.data.ave import (AUDIO_FILE, BACKGROUND, CLASS_NAMES, LABELS_FILE, N_SEGMENTS, VISUAL_DIM, VISUAL_FILE,
                               VISUAL_MAP_SHAPE, check_row_counts, onehot_to_index, open_dataset, read_rows)
from avel_dgl.data.cache import pool_maps, read_visual_maps
from avel_dgl.errors import AvelError, with_article
from avel_dgl.nn.dpnet import DPNet, perspective_layers
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.variants import innermost
from avel_dgl.progress import bar
from avel_dgl.runtime import Runtime

DISPLAY_SIZE = 112  # 7x7 maps are upsampled bilinearly to this many pixels for display
DEFAULT_SEGMENTS = 4  # panels rows when --segments is not given


def first_rgct(model: torch.nn.Module) -> RGCT:
    """The RGCT of the first DPBlock, inside its wrappers (nn/variants.innermost). Only networks
    whose first layer is an RGCT on the stem's 512-d features have these maps."""
    layers = perspective_layers(model) if isinstance(model, DPNet) else []
    layer = innermost(layers[0]) if layers else None
    if isinstance(layer, RGCT) and layer.in_dim == VISUAL_DIM:
        return layer
    if isinstance(layer, RGCT):
        found = f"a first RGCT on {layer.in_dim}-d features"
    elif layers:
        found = f"a network whose first layer is {with_article(type(layer).__name__)}"
    else:
        found = f"{with_article(type(model).__name__)} network, which has no graph layers"
    raise AvelError(f"checkpoint: feature activation maps need a network whose first layer is an RGCT on the "
                    f"{VISUAL_DIM}-d input features (the paper's DPNet), found {found}")


def polymorph_names() -> list[tuple[str, str]]:
    """(node type, relation name) of every panel column: audio polymorphs, then visual ones, each in
    graph.RELATIONS_INTO order (the order of the query projection's relation axis)."""
    return [(nt, rel[1]) for nt in graph.NODE_TYPES for rel in graph.RELATIONS_INTO[nt]]


@torch.no_grad()
def query_fields(model: torch.nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """The relational polymorphs at every position: maps (S, 7, 7, 512) raw VGG19 features ->
    (S, 6, 7, 7, d), W_Q^r x + b_Q^r for each input-normalised position x, polymorphs in
    polymorph_names() order. Averaged over the 7x7 positions this is exactly the query the first
    RGCT computes from the pooled features (the projection and the normalisation are affine)."""
    rgct = first_rgct(model)
    if tuple(maps.shape[1:]) != VISUAL_MAP_SHAPE:
        raise ValueError(f"expected maps (S, 7, 7, 512), got {tuple(maps.shape)}")
    s, h, w, d = maps.shape
    x = model.visual_norm(maps.reshape(-1, d).float())  # the per-feature standardisation of forward
    q = torch.cat([rgct.query[nt](x) for nt in graph.NODE_TYPES], dim=1)  # (S*49, 6, d)
    return q.reshape(s, h, w, q.shape[1], -1).permute(0, 3, 1, 2, 4)


def activation_maps(model: torch.nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """Feature activation maps (section 4.2): maps (S, 7, 7, 512) -> (S, 6, 7, 7), the maximum over
    channels of each polymorph's query at each position."""
    return query_fields(model, maps).amax(dim=-1)


def default_segments(pred: np.ndarray, limit: int = DEFAULT_SEGMENTS) -> list[int]:
    """Up to `limit` segments spread over those predicted as an event, else over the whole video."""
    pool = [t for t, c in enumerate(pred) if c != BACKGROUND] or list(range(len(pred)))
    picks = np.linspace(0, len(pool) - 1, min(limit, len(pool))).round().astype(int)
    return sorted({pool[i] for i in picks})


def plot_fam(fams: torch.Tensor, segments: list[int], row_labels: list[str], title: str):
    """A figure with one row per segment and one panel per polymorph: fams (S, 6, 7, 7). Each panel
    is min-max scaled on its own (as class activation maps are), so colours compare regions within
    a panel, not across panels."""
    up = F.interpolate(fams, size=(DISPLAY_SIZE, DISPLAY_SIZE), mode="bilinear", align_corners=False)
    names = polymorph_names()
    fig = Figure(figsize=(2.0 * len(names), 2.2 * len(segments) + 0.6))
    axes = fig.subplots(len(segments), len(names), squeeze=False)
    for i, label in enumerate(row_labels):
        for j, (ntype, rel) in enumerate(names):
            ax = axes[i, j]
            panel = up[i, j].numpy()
            span = panel.max() - panel.min()
            ax.imshow((panel - panel.min()) / span if span > 0 else np.zeros_like(panel), cmap="jet", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{ntype} node\n{rel}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fam_figure(checkpoint, data_dir, row: int, segments: list[int] | None, out, runtime: Runtime,
               overwrite: bool = False) -> list[int]:
    """Write the FAM figure of video `row` of a data folder to `out` (PNG; an existing file only
    with `overwrite`), the model run under `runtime`. Row labels give each segment's predicted class
    (and its label, when the folder has labels). Returns the segments."""
    data_dir, out = Path(data_dir), Path(out)
    kind = "a file name ending in .png"
    if out.suffix.lower() != ".png" and not out.is_dir():
        raise AvelError(f"--out: expected {kind}, found '{out.name}'")
    check_output(out, overwrite, kind=kind)
    bad = [t for t in segments or [] if not 0 <= t < N_SEGMENTS]
    if bad:
        raise AvelError(f"--segments: expected segment indices in 0..{N_SEGMENTS - 1}, found {bad[0]}")
    steps = bar(total=3, desc="fam", unit="step")
    model, config, _ = load_model(checkpoint, runtime)
    device = runtime.device
    steps.update()
    first_rgct(model)  # fail before reading features if the network has no such layer
    n = check_row_counts(data_dir, [AUDIO_FILE, VISUAL_FILE])
    if not 0 <= row < n:
        raise AvelError(f"--video: expected a row index in [0, {n}) (the videos of {data_dir}), found {row}")
    rows = np.array([row], dtype=np.int64)
    maps = read_visual_maps(data_dir, rows)  # (1, 10, 7, 7, 512) from the full visual file
    with open_dataset(data_dir / AUDIO_FILE) as a:
        audio = read_rows(a, rows, str(data_dir / AUDIO_FILE)).astype(np.float32)
    pooled = pool_maps(maps).astype(np.float32)  # what the model sees (section 3.2)
    with torch.no_grad():
        logits = model(graph.batch_graph(1), torch.from_numpy(audio).to(device),
                       torch.from_numpy(pooled).to(device))
    probs = torch.softmax(logits[0], dim=-1).cpu().numpy()
    pred = probs.argmax(-1)
    truth = None
    labels_path = data_dir / LABELS_FILE
    if labels_path.is_file():
        with open_dataset(labels_path) as lab:
            truth = onehot_to_index(read_rows(lab, rows, str(labels_path)), str(labels_path), rows=rows)[0]
    steps.update()
    segments = sorted(set(segments)) if segments else default_segments(pred)
    fams = activation_maps(model, torch.from_numpy(maps[0, segments]).to(device)).cpu()
    labels = []
    for t in segments:
        text = f"segment {t} ({t}-{t + 1} s)\npred: {CLASS_NAMES[pred[t]][:22]} ({probs[t, pred[t]]:.2f})"
        if truth is not None:
            text += f"\ntrue: {CLASS_NAMES[truth[t]][:22]}"
        labels.append(text)
    title = (f"Feature activation maps, first RGCT, video row {row} of {data_dir.name} "
             f"({config.model.variant}; each panel min-max scaled)")
    fig = plot_fam(fams, segments, labels, title)
    write_atomic(out, lambda f: fig.savefig(f, format="png", dpi=100, metadata={"Software": mark("fam")}))
    steps.close()
    return segments
