"""Synthetic AVE-format data: the generative model, and writing a complete AVE data folder.

`make_synthetic` writes every file of the AVE layout (see `avel_dgl.data.ave`) with the real
release's keys, shapes and dtypes, from a documented generative model of AVE's phenomena. The
model is written out in full in docs/SYNTHETIC.md; in short:

Plan (per dataset). Each of N videos gets one event class (28 classes, drawn with AVE's class
frequencies) and one contiguous event span [start, end) drawn like AVE's annotations: about two
thirds cover 0-10, the rest last 2-9 s, anchored at the start, at the end or in between, so about
17% of segments are background. With `annotations=FILE` the classes and spans are FILE's rows.
Splits keep AVE's 3339/402/402 proportions, stratified by class. labels.h5 (the original test
labels) differs from right_labels.h5 (the corrected ones, which the features follow) on about 5% of
the test videos, by one boundary moved one segment. M = 178/4143 of N extra videos, all
background, form the noisy (weak-supervision) set.

Presence (per segment t). a_t and o_t say how much of the video class's sound and sight segment t
holds. An event segment has both (a = o = 1), except that with probability 0.25 one modality is
attenuated to 0.1-0.4 (weak sound, occluded object). A background segment is audible-but-not-
visible (a ~ U(0.6, 1), o = 0), visible-but-silent (the reverse), or holds neither, with
probabilities 0.4 / 0.4 / 0.2. So a segment is an event only when both modalities agree.

Features. With relu(x) = max(x, 0), class prototypes P (sparse, non-negative; classes of one
family such as string instruments or engines share half of their active channels) and per-video
gains g ~ LogNormal(0, 0.25):
    audio[t]       = s_A * relu(b_A + n_v + a_t g_A P_A[c] + e_t)                  (128)
    visual[t,h,w]  = s_V * relu(b_V + z_v + x_v[h,w] + o_t g_V m_v[h,w] P_V[c] + e_thw)   (512)
b are fixed channel biases (most pre-activations negative, so features are sparse like ReLU
outputs); n_v, z_v are per-video nuisance (recording condition, scene) shared by the video's
segments; x_v[h,w] is static per-cell scene texture; m_v is the object's mask, a 2x2 to 3x3 block
of the 7x7 grid at a per-video position; e are per-segment noise. Scales s put the audio at the
real VGGish features' scale (mean ~0.12, ~65% zeros, as in the release's audio_feature_noisy.h5).

Determinism: every random draw comes from numpy generators seeded by (seed, stream, row), so the
same seed gives byte-identical arrays whatever the chunk size. Videos, their labels and their
annotation lines are generated and written in chunks (`_write_rows`), so no array of the output
is ever in memory whole (the full-size visual file is 7.7 GB in float64); what grows with the
number of videos is the plan (class, span and split of each video: about 60 bytes a video), and
the estimated output size is checked against the free space before anything is planned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avel_dgl.data.ave import (
    ANNOTATIONS_FILE, AUDIO_DIM, AUDIO_FILE, BACKGROUND, CLASS_NAMES, FEATURE_KEY, LABELS_FILE,
    MIL_LABELS_FILE, N_CLASSES, N_EVENTS, N_SEGMENTS, NOISY_AUDIO_FILE, NOISY_LABELS_FILE,
    NOISY_VISUAL_FILE, ORDER_FILES, ORDER_KEY, RIGHT_LABELS_FILE, SPLITS, VISUAL_DIM, VISUAL_FILE,
    SPECS, VISUAL_MAP_SHAPE, read_annotations, read_array,
)
from avel_dgl.data.cache import CACHE_DIR
from avel_dgl.errors import AvelError
from avel_dgl.interrupt import stoppable
from avel_dgl.outputs import OwnedFolder, check_free_space, check_owned_folder, check_room, writing_folder

DEFAULT_VIDEOS = 600
MIN_VIDEOS = 3  # one per split
VISUAL_DTYPES = ("float64", "float32")
CHUNK_VIDEOS = 32  # 32 videos of float32 maps = 32 MB generated at a time
MANIFEST_FILE = "SYNTHETIC.json"  # marks a folder as ours, so a rerun may replace it

# The real release: 4143 videos split 3339/402/402, plus 178 background-only noisy videos.
REAL_VIDEOS = 4143
REAL_SPLIT_SIZES = {"train": 3339, "val": 402, "test": 402}
REAL_NOISY = 178
MIN_NOISY = 4

# Videos per class in the real Annotations.txt (class index order): the sampling weights.
CLASS_COUNTS = (188, 176, 171, 184, 188, 175, 178, 187, 172, 163, 182, 138, 102, 99, 186, 176,
                160, 183, 100, 83, 69, 160, 60, 64, 180, 109, 154, 156)
# Families of similar-sounding, similar-looking classes; members share half their prototype.
# 0 voices, 1 plucked/bowed strings, 2 wind and reeds, 3 engines, 4 bells/horns/clocks,
# 5 animals, 6 household.
CLASS_FAMILY = (4, 0, 5, 3, 3, 0, 3, 1, 2, 1, 6, 3, 2, 3, 1, 4, 4, 1, 5, 0, 3, 3, 5, 5, 6, 5, 2, 1)

# Random streams: each is its own SeedSequence child, so adding draws to one never shifts another.
_PLAN, _WORLD, _VIDEO, _NOISY = range(4)


@dataclass(frozen=True)
class Knobs:
    """The generative model's parameters (documented in docs/SYNTHETIC.md)."""

    # Spans, from the real Annotations.txt: share of 0-10 videos; lengths 2..9 of the others
    # (counts); where a partial span sits (starts at 0 / ends at 10 / in between).
    full_share: float = 0.66
    partial_length_counts: tuple = (214, 220, 217, 196, 200, 139, 111, 95)
    anchor_start: float = 0.36
    anchor_end: float = 0.46
    # Presence of the class signal per segment.
    weak_share: float = 0.25  # event segments with one modality attenuated
    weak_range: tuple = (0.1, 0.4)
    background_kinds: tuple = (0.4, 0.4, 0.2)  # audible-only, visible-only, neither
    lone_range: tuple = (0.6, 1.0)  # strength of the one present modality in a background segment
    gain_sigma: float = 0.25  # per-video log-gain of each modality's class signal
    # Audio (pre-activation units).
    audio_active: tuple = (8, 8)  # family channels, own channels per class prototype
    audio_bias: tuple = (-0.5, 0.6)  # mean, std of the fixed channel bias
    audio_signal: float = 0.7
    audio_nuisance: float = 0.35
    audio_noise: float = 1.2
    audio_scale: float = 0.35
    # Visual (pre-activation units, per grid cell).
    visual_active: tuple = (24, 24)
    visual_bias: tuple = (-1.8, 0.5)
    visual_signal: float = 1.5
    visual_scene: float = 0.25
    visual_texture: float = 0.5
    visual_noise: float = 2.2
    visual_scale: float = 2.0
    object_sides: tuple = (2, 3)  # the object's block is h x w cells, h, w drawn from these


KNOBS = Knobs()


@dataclass
class Plan:
    """Everything about a dataset except the features."""

    classes: np.ndarray  # (N,) int64 in [0, 28)
    spans: np.ndarray  # (N, 2) int64 [start, end): the true spans (right_labels.h5)
    original_spans: np.ndarray  # (N, 2) the labels.h5 spans: some test boundaries moved by one
    orders: dict  # split -> int64 row indices
    video_ids: Sequence[str]
    qualities: Sequence[str]
    noisy_classes: np.ndarray  # (M,) the hidden class whose signal the noisy videos carry
    source: str | None = None  # the annotations file, if any


@dataclass
class World:
    """The fixed per-dataset quantities: channel biases and class prototypes."""

    audio_bias: np.ndarray  # (128,)
    audio_proto: np.ndarray  # (28, 128)
    visual_bias: np.ndarray  # (512,)
    visual_proto: np.ndarray  # (28, 512)
    knobs: Knobs = field(default=KNOBS)


class RowNames:
    """The names of rows 0..n-1 made from a format ("synth{:06d}"), one at a time: a list of a
    billion of them would not fit in memory."""

    def __init__(self, template: str, n: int):
        self.template, self.n = template, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, row: int) -> str:
        if not 0 <= row < self.n:
            raise IndexError(row)
        return self.template.format(row)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# ----------------------------------------------------------------------------------------- plan

def sample_spans(rng: np.random.Generator, n: int, knobs: Knobs = KNOBS) -> np.ndarray:
    """(n, 2) event spans [start, end) distributed like AVE's annotations."""
    counts = np.asarray(knobs.partial_length_counts, dtype=np.float64)
    length = rng.choice(np.arange(2, 2 + len(counts)), size=n, p=counts / counts.sum())
    where = rng.random(n)
    # An interior span starts in 1 .. 9-length; a 9-s span has no interior place and ends at 10.
    interior = 1 + (rng.random(n) * np.maximum(N_SEGMENTS - length - 1, 1)).astype(np.int64)
    start = np.where(where < knobs.anchor_start, 0,
                     np.where(where < knobs.anchor_start + knobs.anchor_end, N_SEGMENTS - length, interior))
    full = rng.random(n) < knobs.full_share
    start = np.where(full, 0, start)
    end = np.where(full, N_SEGMENTS, start + length)
    return np.stack([start, end], axis=1).astype(np.int64)


def split_rows(rng: np.random.Generator, classes: np.ndarray) -> dict:
    """Train/val/test row indices in AVE's proportions, stratified by class.

    Rows are grouped by class (shuffled within a class, as in the real order files) and the test,
    then the val rows are taken at evenly spaced positions of that sequence, so every split gets
    each class in proportion.
    """
    n = len(classes)
    n_test = max(1, round(n * REAL_SPLIT_SIZES["test"] / REAL_VIDEOS))
    n_val = max(1, round(n * REAL_SPLIT_SIZES["val"] / REAL_VIDEOS))
    grouped = np.lexsort((rng.random(n), classes))  # by class, random within a class

    def evenly(count: int, total: int) -> np.ndarray:
        return ((np.arange(count) + 0.5) * total / count).astype(np.int64)

    test_pos = evenly(n_test, n)
    rest = np.setdiff1d(np.arange(n), test_pos)
    val_pos = rest[evenly(n_val, len(rest))]
    split_of = np.zeros(n, dtype=np.int64)  # position in `grouped` -> 0 train, 1 val, 2 test
    split_of[val_pos] = 1
    split_of[test_pos] = 2
    return {split: grouped[split_of == i].astype(np.int64) for i, split in enumerate(SPLITS)}


def shift_test_boundaries(rng: np.random.Generator, spans: np.ndarray, test_rows: np.ndarray,
                          share: float = 0.05) -> np.ndarray:
    """The original (labels.h5) spans: like `spans`, but on about `share` of the test videos one
    boundary moved by one segment, as the corrected AVE test labels differ from the original ones.
    Spans stay inside 0-10 and at least 2 s long; empty spans are never chosen."""
    original = spans.copy()
    candidates = test_rows[spans[test_rows, 1] > spans[test_rows, 0]]
    if len(candidates) == 0:
        return original
    count = min(len(candidates), max(1, round(share * len(test_rows))))
    for row in np.sort(rng.choice(candidates, size=count, replace=False)):
        start, end = spans[row]
        moves = [(start + d, end) for d in (-1, 1) if 0 <= start + d and end - (start + d) >= 2]
        moves += [(start, end + d) for d in (-1, 1) if end + d <= N_SEGMENTS and end + d - start >= 2]
        original[row] = moves[rng.integers(len(moves))]
    return original


def noisy_count(n: int) -> int:
    return max(MIN_NOISY, round(n * REAL_NOISY / REAL_VIDEOS))


def random_plan(seed: int, videos: int, knobs: Knobs = KNOBS) -> Plan:
    rng = _rng(seed, _PLAN)
    weights = np.asarray(CLASS_COUNTS, dtype=np.float64) / sum(CLASS_COUNTS)
    classes = rng.choice(N_EVENTS, size=videos, p=weights).astype(np.int64)
    spans = sample_spans(rng, videos, knobs)
    orders = split_rows(rng, classes)
    return Plan(
        classes=classes, spans=spans, original_spans=shift_test_boundaries(rng, spans, orders["test"]),
        orders=orders, video_ids=RowNames("synth{:06d}", videos), qualities=RowNames("good", videos),
        noisy_classes=rng.choice(N_EVENTS, size=noisy_count(videos), p=weights).astype(np.int64),
    )


def annotated_videos(path: Path) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Classes, spans, VideoIDs and qualities of an AVE Annotations.txt, row i = line i, read by
    the data layer's parser (`ave.read_annotations`); errors name the --annotations option."""
    try:
        frame = read_annotations(path)
    except AvelError as e:
        raise AvelError(f"--annotations {e}") from None
    if frame.empty:
        raise AvelError(f"--annotations {path}: expected 'Category&VideoID&Quality&StartTime&EndTime' "
                        f"lines, found an empty file")
    unknown = ~frame["category"].isin(CLASS_NAMES[:N_EVENTS])
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise AvelError(f"--annotations {path}: line {row + 1}: expected one of the 28 AVE categories, "
                        f"found {frame['category'].iloc[row]!r}")
    classes = frame["category"].map(CLASS_NAMES.index).to_numpy(dtype=np.int64)
    spans = frame[["start", "end"]].to_numpy(dtype=np.int64).reshape(-1, 2)
    return classes, spans, frame["video_id"].tolist(), frame["quality"].tolist()


def read_orders_beside(path: Path, file_rows: int, keep: int) -> dict | None:
    """The train/val/test order files next to an annotations file, restricted to rows < keep;
    None when there are none. All three or none must be there."""
    paths = {split: Path(path).parent / ORDER_FILES[split] for split in SPLITS}
    present = [split for split, p in paths.items() if p.is_file()]
    if not present:
        return None
    if len(present) < len(SPLITS):
        missing = ", ".join(str(paths[s]) for s in SPLITS if s not in present)
        raise AvelError(f"--annotations {path}: expected all three order files beside it or none, "
                        f"found {len(present)} (missing {missing})")
    orders, seen = {}, np.zeros(file_rows, dtype=bool)
    for split, p in paths.items():
        rows = read_array(p, ORDER_KEY)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise AvelError(f"{p}: key '{ORDER_KEY}' expected 1-D integer row indices, "
                            f"found shape {rows.shape} dtype {rows.dtype}")
        if len(rows) and (rows.min() < 0 or rows.max() >= file_rows):
            raise AvelError(f"{p}: expected row indices in [0, {file_rows}) (the rows of {path}), "
                            f"found {rows.min()}..{rows.max()}")
        if seen[rows].any() or len(np.unique(rows)) != len(rows):
            raise AvelError(f"{p}: expected row indices disjoint from the other splits and unique, "
                            f"found repeated rows")
        seen[rows] = True
        orders[split] = rows[rows < keep].astype(np.int64)
    return orders


def annotation_plan(seed: int, path: Path, videos: int | None) -> Plan:
    classes, spans, ids, qualities = annotated_videos(path)
    rows = len(classes)
    if videos is not None and videos > rows:
        raise AvelError(f"--videos: expected at most {rows} (the rows of --annotations {path}), found {videos}")
    n = rows if videos is None else videos
    if n < MIN_VIDEOS:
        raise AvelError(f"--annotations {path}: expected at least {MIN_VIDEOS} rows, found {n}")
    classes, spans = classes[:n], spans[:n]
    rng = _rng(seed, _PLAN)
    orders = read_orders_beside(path, rows, n)
    if orders is None:
        orders = split_rows(rng, classes)
    weights = np.asarray(CLASS_COUNTS, dtype=np.float64) / sum(CLASS_COUNTS)
    return Plan(
        classes=classes, spans=spans, original_spans=shift_test_boundaries(rng, spans, orders["test"]),
        orders=orders, video_ids=ids[:n], qualities=qualities[:n],
        noisy_classes=rng.choice(N_EVENTS, size=noisy_count(n), p=weights).astype(np.int64),
        source=str(path),
    )


# ---------------------------------------------------------------------------------- features

def _prototypes(rng: np.random.Generator, dim: int, family_active: int, own_active: int) -> np.ndarray:
    """(28, dim) sparse non-negative class prototypes; a family's classes share `family_active`
    channels (with their own strengths on them), each class adds `own_active` channels of its own."""
    families = max(CLASS_FAMILY) + 1
    family_channels = [rng.choice(dim, size=family_active, replace=False) for _ in range(families)]
    proto = np.zeros((N_EVENTS, dim))
    for c in range(N_EVENTS):
        own = rng.choice(dim, size=own_active, replace=False)
        channels = np.concatenate([family_channels[CLASS_FAMILY[c]], own])
        proto[c, channels] = rng.uniform(0.5, 1.5, size=len(channels))
    return proto


def make_world(seed: int, knobs: Knobs = KNOBS) -> World:
    rng = _rng(seed, _WORLD)
    return World(
        audio_bias=rng.normal(*knobs.audio_bias, size=AUDIO_DIM),
        audio_proto=_prototypes(rng, AUDIO_DIM, *knobs.audio_active),
        visual_bias=rng.normal(*knobs.visual_bias, size=VISUAL_DIM),
        visual_proto=_prototypes(rng, VISUAL_DIM, *knobs.visual_active),
        knobs=knobs,
    )


def presence(rng: np.random.Generator, span: tuple, knobs: Knobs = KNOBS) -> tuple[np.ndarray, np.ndarray]:
    """(a, o): how much of the class's sound and sight each of the 10 segments holds."""
    t = np.arange(N_SEGMENTS)
    event = (t >= span[0]) & (t < span[1])
    weak = event & (rng.random(N_SEGMENTS) < knobs.weak_share)
    weak_audio = rng.random(N_SEGMENTS) < 0.5  # which modality a weak event segment loses
    factor = rng.uniform(*knobs.weak_range, size=N_SEGMENTS)
    kind = rng.choice(3, size=N_SEGMENTS, p=knobs.background_kinds)  # audible, visible, neither
    lone = rng.uniform(*knobs.lone_range, size=N_SEGMENTS)
    a = np.where(event, np.where(weak & weak_audio, factor, 1.0), np.where(kind == 0, lone, 0.0))
    o = np.where(event, np.where(weak & ~weak_audio, factor, 1.0), np.where(kind == 1, lone, 0.0))
    return a, o


def video_features(world: World, rng: np.random.Generator, cls: int, span: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One video: audio (10, 128) float64 and visual maps (10, 7, 7, 512) float32."""
    k = world.knobs
    a, o = presence(rng, span, k)
    gain_a, gain_v = rng.lognormal(0.0, k.gain_sigma, size=2)

    nuisance = rng.normal(0.0, k.audio_nuisance, size=AUDIO_DIM)
    noise = rng.normal(0.0, k.audio_noise, size=(N_SEGMENTS, AUDIO_DIM))
    pre = world.audio_bias + nuisance + (a * gain_a * k.audio_signal)[:, None] * world.audio_proto[cls] + noise
    audio = k.audio_scale * np.maximum(pre, 0.0)

    rows, cols = VISUAL_MAP_SHAPE[:2]
    h, w = rng.choice(k.object_sides, size=2)
    top, left = rng.integers(rows - h + 1), rng.integers(cols - w + 1)
    mask = np.zeros((rows, cols), dtype=np.float32)
    mask[top:top + h, left:left + w] = 1.0
    scene = rng.normal(0.0, k.visual_scene, size=VISUAL_DIM).astype(np.float32)
    texture = rng.normal(0.0, k.visual_texture, size=VISUAL_MAP_SHAPE).astype(np.float32)
    static = world.visual_bias.astype(np.float32) + scene + texture  # (7, 7, 512)
    obj = (mask[..., None] * (gain_v * k.visual_signal * world.visual_proto[cls]).astype(np.float32))
    visual = rng.standard_normal((N_SEGMENTS, *VISUAL_MAP_SHAPE), dtype=np.float32)
    visual *= np.float32(k.visual_noise)
    visual += static
    visual += o.astype(np.float32)[:, None, None, None] * obj
    np.maximum(visual, 0.0, out=visual)
    visual *= np.float32(k.visual_scale)
    return audio, visual


# ----------------------------------------------------------------------------------- writing

def segment_onehot(spans: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, 10, 29) float32 one-hot: the class inside [start, end), background elsewhere."""
    t = np.arange(N_SEGMENTS)
    event = (t >= spans[:, :1]) & (t < spans[:, 1:])
    index = np.where(event, classes[:, None], BACKGROUND)
    return np.eye(N_CLASSES, dtype=np.float32)[index]


def _write(path: Path, key: str, array: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)


def _write_rows(dset: h5py.Dataset, start: int, rows: np.ndarray) -> None:
    """Every per-video array goes to its file through here, one chunk of videos at a time (the
    tests watch it to see that memory does not grow with the number of videos), after checking
    that the disk has room for it (outputs.check_room)."""
    check_room(Path(dset.file.filename).parent, len(rows) * dset.dtype.itemsize * int(np.prod(dset.shape[1:])))
    dset[start:start + len(rows)] = rows


def _write_chunked(path: Path, key: str, n: int, row_shape: tuple, dtype, make, chunk_videos: int) -> None:
    """An (n, *row_shape) array written `chunk_videos` rows at a time; make(start, stop) gives the rows."""
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(key, shape=(n, *row_shape), dtype=dtype)
        for start in range(0, n, chunk_videos):
            _write_rows(dset, start, make(start, min(n, start + chunk_videos)))


def estimated_bytes(videos: int, visual_dtype: str) -> int:
    """About how many bytes a folder of `videos` videos (and its noisy videos) takes on disk."""
    per_video = N_SEGMENTS * (AUDIO_DIM * 8 + np.prod(VISUAL_MAP_SHAPE) * np.dtype(visual_dtype).itemsize)
    labels = (2 * N_SEGMENTS + 1) * N_CLASSES * 4 + 8 + 60  # labels, right_labels, mil_labels, order, annotation
    return int((videos + noisy_count(videos)) * (per_video + labels))


def _write_features(folder: Path, audio_name: str, visual_name: str, world: World, seed: int,
                    stream: int, classes: np.ndarray, spans: np.ndarray, visual_dtype: str,
                    chunk_videos: int, bar) -> None:
    n = len(classes)
    with h5py.File(folder / audio_name, "w") as fa, h5py.File(folder / visual_name, "w") as fv:
        audio_set = fa.create_dataset(FEATURE_KEY, shape=(n, N_SEGMENTS, AUDIO_DIM), dtype="float64")
        visual_set = fv.create_dataset(FEATURE_KEY, shape=(n, N_SEGMENTS, *VISUAL_MAP_SHAPE), dtype=visual_dtype)
        for start in range(0, n, chunk_videos):
            stop = min(n, start + chunk_videos)
            audio = np.empty((stop - start, N_SEGMENTS, AUDIO_DIM))
            visual = np.empty((stop - start, N_SEGMENTS, *VISUAL_MAP_SHAPE), dtype=np.float32)
            for i, row in enumerate(range(start, stop)):
                audio[i], visual[i] = video_features(world, _rng(seed, stream, row), classes[row], spans[row])
            _write_rows(audio_set, start, audio)
            _write_rows(visual_set, start, visual)  # HDF5 converts to float64 on write when asked
            if bar is not None:
                bar.update(stop - start)


def _write_folder(folder: Path, plan: Plan, seed: int, visual_dtype: str, knobs: Knobs,
                  chunk_videos: int, progress: bool) -> None:
    n, m = len(plan.classes), len(plan.noisy_classes)
    eye = np.eye(N_CLASSES, dtype=np.float32)
    for name, spans in ((LABELS_FILE, plan.original_spans), (RIGHT_LABELS_FILE, plan.spans)):
        _write_chunked(folder / name, FEATURE_KEY, n, (N_SEGMENTS, N_CLASSES), np.float32,
                       lambda a, b, spans=spans: segment_onehot(spans[a:b], plan.classes[a:b]), chunk_videos)
    _write_chunked(folder / MIL_LABELS_FILE, FEATURE_KEY, n, (N_CLASSES,), np.float32,
                   lambda a, b: eye[plan.classes[a:b]], chunk_videos)
    for split in SPLITS:
        _write(folder / ORDER_FILES[split], ORDER_KEY, plan.orders[split].astype(np.int64))
    _write_chunked(folder / NOISY_LABELS_FILE, FEATURE_KEY, m, (N_CLASSES,), np.float32,
                   lambda a, b: eye[np.full(b - a, BACKGROUND)], chunk_videos)
    with open(folder / ANNOTATIONS_FILE, "w", encoding="utf-8") as f:
        for start in range(0, n, chunk_videos):
            f.write("".join(f"{CLASS_NAMES[plan.classes[row]]}&{plan.video_ids[row]}&{plan.qualities[row]}&"
                            f"{plan.spans[row, 0]}&{plan.spans[row, 1]}\n"
                            for row in range(start, min(n, start + chunk_videos))))

    world = make_world(seed, knobs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n + m, unit="video", desc="make-synthetic")
    try:
        _write_features(folder, AUDIO_FILE, VISUAL_FILE, world, seed, _VIDEO, plan.classes, plan.spans,
                        visual_dtype, chunk_videos, bar)
        # Noisy videos carry one modality of a hidden class at most: an empty span.
        _write_features(folder, NOISY_AUDIO_FILE, NOISY_VISUAL_FILE, world, seed, _NOISY, plan.noisy_classes,
                        np.zeros((m, 2), dtype=np.int64), visual_dtype, chunk_videos, bar)
    finally:
        if bar is not None:
            bar.close()
    shifted = np.flatnonzero((plan.original_spans != plan.spans).any(1))
    manifest = {
        "generator": "avel-dgl make-synthetic", "model_version": 1, "seed": seed, "videos": n,
        "noisy_videos": m, "annotations": plan.source, "visual_dtype": visual_dtype,
        "split_sizes": {s: int(len(plan.orders[s])) for s in SPLITS},
        "labels_differ_on_rows": shifted.tolist(),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def written_files() -> set[str]:
    """The names make-synthetic writes into its folder; with the derived-file cache that other
    commands add (`.avel_cache`), the only names --overwrite may delete."""
    return {*SPECS, ANNOTATIONS_FILE, MANIFEST_FILE}


SYNTHETIC_FOLDER = OwnedFolder("make-synthetic folder", MANIFEST_FILE,
                               lambda name: name in written_files() | {CACHE_DIR}, swapped=True)


def make_synthetic(out_dir: str | Path, videos: int | None = None, seed: int = 0,
                   annotations: str | Path | None = None, visual_dtype: str = "float64",
                   chunk_videos: int = CHUNK_VIDEOS, progress: bool = False,
                   knobs: Knobs = KNOBS, overwrite: bool = False) -> Path:
    """Write a complete AVE-format folder at `out_dir` and return its path.

    videos: number of videos (default 600); with `annotations`, the first `videos` rows of it
    (default all). annotations: an AVE Annotations.txt whose classes and spans are used, and whose
    neighbouring order files, if present, give the splits. The folder appears only when complete:
    it is written into a hidden sibling and renamed. An existing non-empty folder is refused,
    except with `overwrite` one written earlier by make-synthetic that holds only its files.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AvelError(f"--seed: expected a non-negative integer, found {seed!r}")
    if videos is not None and (isinstance(videos, bool) or not isinstance(videos, (int, np.integer))
                               or videos < MIN_VIDEOS):
        raise AvelError(f"--videos: expected an integer of at least {MIN_VIDEOS} (one video per split), "
                        f"found {videos!r}")
    if visual_dtype not in VISUAL_DTYPES:
        raise AvelError(f"--visual-dtype: expected one of {', '.join(VISUAL_DTYPES)}, found {visual_dtype!r}")
    if chunk_videos < 1:
        raise AvelError(f"chunk_videos: expected a positive integer, found {chunk_videos}")
    seed = int(seed)
    if not str(out_dir).strip():  # Path("") would be the current folder
        raise AvelError("--out: expected a folder to create, found an empty name")
    out = Path(out_dir)

    def check_space(count: int) -> None:
        check_free_space(out.parent, estimated_bytes(count, visual_dtype), f"--out {out}: {count} videos")

    with stoppable("make-synthetic", f"nothing was written to {out}; run the same command again"):
        if annotations is None:  # checked before planning: the plan grows with the number of videos
            check_space(DEFAULT_VIDEOS if videos is None else int(videos))
            plan = random_plan(seed, DEFAULT_VIDEOS if videos is None else int(videos), knobs)
        else:  # an annotations file is read whole anyway: its rows bound the plan
            plan = annotation_plan(seed, Path(annotations), None if videos is None else int(videos))
            check_space(len(plan.classes))
        check_owned_folder(out, SYNTHETIC_FOLDER, overwrite)
        with writing_folder(out, "nothing was written") as folder:
            _write_folder(folder, plan, seed, visual_dtype, knobs, chunk_videos, progress)
    return out
