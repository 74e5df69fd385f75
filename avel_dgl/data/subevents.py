"""Replicate (section 3.4, Algorithm 1): sub-event identification, the sub-event databases, their
HDF5 file, and the replica sampler that builds one replica per training video on the fly.

Rules (the paper leaves the edge cases open; these keep a replica's segment labels identical to
its original's, and docs/REPLICATE_LINK.md works an example):

* An event run is a maximal run of segments with the same event class c (not background).
* start: the two segments around the run's onset, (background, c), i.e. the one-segment context
  window on each side of the border. Only when the segment before the run is background and not
  already used by an earlier sub-event.
* end: the two segments around the run's offset, (c, background), on the same conditions for the
  segment after the run and the run's last segment (a one-segment run whose segment the start took
  has no end).
* continue: the run's segments that neither start nor end took. A run touching the first segment
  began before the clip, so it opens with continue, not start; likewise a run touching the last
  segment closes with continue. A full-length event is one continue of length 10. Runs of two
  different classes that touch have no border sub-event between them.
* background: each maximal run of background segments that no start or end took. Background runs
  are keyed by the video's class (background in a dog video shows dog-video context).

The sub-events of a video tile its 10 segments in order: that is its sequence SEQ_O.

Databases: one per (class, kind, length), entries are references (video row, start segment);
never feature copies. Start and end entries have length 2. A continue or background run of
length L is stored with all its contiguous windows of lengths 1..L (the paper decomposes continues
into lengths 1..L-1 so that shorter continues of other videos find samples; background gets the
same treatment, so that background runs of other lengths find samples too).

Replica (Algorithm 1): for each sub-event of SEQ_O draw one entry, uniformly, from the database of
the same class, kind and length, excluding entries of the original video itself (a replica is
stitched from *other* videos). Fallback, following Algorithm 1 line 1 ("identify a sequence such
that samples of matching length exist"): a sub-event without a sample is split into pieces that
have samples (a continue or background run into pieces of the longest length other videos offer;
a start or end into its background and event segment); a piece that still has no sample (the class
has no other video with that kind) is copied from the original. Both are counted.

The database is a pure function of the training labels, so it can always be rebuilt in memory;
the file (`avel-dgl build-subevents`) makes it inspectable, editable and reusable. It carries a
fingerprint of the data it came from (train order rows and segment/video labels) and is refused
for any other data.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from avel_dgl.data.dataset import SplitData
from avel_dgl.errors import AvelError
from avel_dgl.outputs import mark, write_failure
from avel_dgl.format import BACKGROUND, CLASS_NAMES, N_CLASSES, N_SEGMENTS

KINDS = ("start", "continue", "end", "background")
START, CONTINUE, END, BACKGROUND_RUN = range(len(KINDS))
BORDER_LENGTH = 2  # start and end: one context segment on each side of the event border

FORMAT_VERSION = 1  # bump when the rules above change: older files are then refused
DEFAULT_FILE = "subevents.h5"  # in <data_dir>/.avel_cache/, beside the pooled visual cache
COLUMNS = ("class", "kind", "length", "row", "start")  # one 1-d int64 dataset each


@dataclass(frozen=True)
class SubEvent:
    kind: int  # index into KINDS
    cls: int  # event class; for background, the video's class
    start: int  # first segment
    length: int


def identify(labels: Sequence[int], video_label: int) -> list[SubEvent]:
    """SEQ_O of one video: its sub-events in segment order, tiling all segments (rules above)."""
    labels = [int(x) for x in labels]
    t_len = len(labels)
    kind_of = [None] * t_len  # (kind, cls, sub-event id) per segment
    next_id = 0

    def claim(first: int, length: int, kind: int, cls: int) -> None:
        nonlocal next_id
        for s in range(first, first + length):
            kind_of[s] = (kind, cls, next_id)
        next_id += 1

    s = 0
    while s < t_len:
        c, e = labels[s], s
        while e < t_len and labels[e] == c:
            e += 1
        if c != BACKGROUND:  # event run [s, e)
            first, last = s, e  # event segments not yet claimed: [first, last)
            if s > 0 and labels[s - 1] == BACKGROUND and kind_of[s - 1] is None:
                claim(s - 1, BORDER_LENGTH, START, c)
                first = s + 1
            end_ok = e < t_len and labels[e] == BACKGROUND and first <= e - 1
            if end_ok:
                last = e - 1
            if last > first:
                claim(first, last - first, CONTINUE, c)
            if end_ok:
                claim(e - 1, BORDER_LENGTH, END, c)
            s = e + 1 if end_ok else e  # the end took the background segment after the run
        else:
            s = e
    # Background segments no border took: maximal runs.
    s = 0
    while s < t_len:
        if kind_of[s] is None:
            e = s
            while e < t_len and kind_of[e] is None:
                e += 1
            claim(s, e - s, BACKGROUND_RUN, int(video_label))
            s = e
        else:
            s += 1
    out, s = [], 0
    while s < t_len:
        e = s
        while e < t_len and kind_of[e][2] == kind_of[s][2]:
            e += 1
        out.append(SubEvent(kind_of[s][0], kind_of[s][1], s, e - s))
        s = e
    return out


def fingerprint(data: SplitData) -> str:
    """sha256 of what the database depends on: the rules' version, the train rows and labels."""
    h = hashlib.sha256(f"avel-dgl subevents v{FORMAT_VERSION} T={data.segment_labels.shape[1]}".encode())
    for tensor in (data.rows, data.segment_labels, data.video_labels):
        h.update(np.ascontiguousarray(tensor.numpy(), dtype="<i8").tobytes())
    return h.hexdigest()


@dataclass
class Database:
    """All sub-event databases as one table of references, sorted by (class, kind, length, row,
    start): each database is a contiguous block, and within it each video's entries are too."""

    cls: np.ndarray  # (M,) int64
    kind: np.ndarray
    length: np.ndarray
    row: np.ndarray  # h5 row of the source video (stable across splits and loads)
    start: np.ndarray  # first segment of the entry in that video
    fingerprint: str

    def __len__(self) -> int:
        return len(self.row)

    def digest(self) -> str:
        """sha256 of the entries: two databases with the same digest give the same replicas."""
        h = hashlib.sha256()
        for column in (self.cls, self.kind, self.length, self.row, self.start):
            h.update(np.ascontiguousarray(column, dtype="<i8").tobytes())
        return h.hexdigest()

    def sorted(self) -> "Database":
        order = np.lexsort((self.start, self.row, self.length, self.kind, self.cls))
        return Database(*(getattr(self, c)[order] for c in ("cls", "kind", "length", "row", "start")),
                        self.fingerprint)


def build_database(data: SplitData) -> Database:
    """The databases of a training split: every sub-event of every video (rules above)."""
    columns: list[list[int]] = [[], [], [], [], []]
    for labels, video_label, row in zip(data.segment_labels.tolist(), data.video_labels.tolist(), data.rows.tolist()):
        for se in identify(labels, video_label):
            if se.kind in (START, END):
                windows = [(se.start, se.length)]
            else:  # every contiguous window of lengths 1..L
                windows = [(se.start + o, n) for n in range(1, se.length + 1) for o in range(se.length - n + 1)]
            for first, n in windows:
                for col, value in zip(columns, (se.cls, se.kind, n, row, first)):
                    col.append(value)
    arrays = [np.asarray(c, dtype=np.int64) for c in columns]
    return Database(*arrays, fingerprint(data)).sorted()


def default_path(data_dir: str | Path) -> Path:
    """Beside the pooled visual cache (data/cache.py: `<data>/.avel_cache/`, or the user cache
    folder for a read-only data folder)."""
    from avel_dgl.data.cache import cache_file

    return cache_file(data_dir, DEFAULT_FILE, data_dir)


def save_database(db: Database, path: str | Path) -> None:
    """Write to a temporary name and rename: an interrupted write never leaves a file behind.
    The name is the process's own, so that `ablate --jobs` workers building it at once do not
    write into one file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(tmp, "w") as f:
            for name, attr in zip(COLUMNS, ("cls", "kind", "length", "row", "start")):
                f.create_dataset(name, data=getattr(db, attr))
            f.attrs["written_by"] = mark("build-subevents")  # what --overwrite may replace (outputs.py)
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["fingerprint"] = db.fingerprint
            f.attrs["kinds"] = ",".join(KINDS)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_failure(path, e, "the sub-event database was not written; choose another --out") from None


def load_database(path: str | Path) -> Database:
    path = Path(path)
    if path.is_dir():
        raise AvelError(f"{path}: is a folder, expected a sub-event database file (from `avel-dgl build-subevents`)")
    if not path.is_file():
        raise AvelError(f"{path}: sub-event database not found (build it with `avel-dgl build-subevents`)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise AvelError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise AvelError(f"{path}: expected a sub-event database of format {FORMAT_VERSION}, "
                            f"found format {version} (rebuild it with `avel-dgl build-subevents`)")
        missing = [c for c in COLUMNS if c not in f]
        if missing:
            raise AvelError(f"{path}: key '{missing[0]}' not found (found keys: {sorted(f.keys())})")
        columns = [np.asarray(f[c][()], dtype=np.int64) for c in COLUMNS]
        fp = f.attrs.get("fingerprint")
    if len({c.shape for c in columns}) != 1 or columns[0].ndim != 1:
        raise AvelError(f"{path}: expected 1-d columns {', '.join(COLUMNS)} of one length, "
                        f"found shapes {[c.shape for c in columns]}")
    return Database(*columns, str(fp)).sorted()


def check_database(db: Database, data: SplitData, source: str | Path) -> None:
    """Refuse a database built from other data, or whose entries do not match the labels."""
    expected = fingerprint(data)
    if db.fingerprint != expected:
        raise AvelError(f"{source}: sub-event database was built from other training data "
                        f"(fingerprint {db.fingerprint[:12]}, expected {expected[:12]}); "
                        f"rebuild it with `avel-dgl build-subevents`")
    if not len(db):
        return
    t_len = data.segment_labels.shape[1]
    pos = _positions(data.rows.numpy(), db.row)

    def bad(mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            raise AvelError(f"{source}: entry {i} (class {db.cls[i]}, kind {db.kind[i]}, length {db.length[i]}, "
                            f"row {db.row[i]}, start {db.start[i]}): {what}")

    bad((db.kind < 0) | (db.kind >= len(KINDS)), f"expected kind in 0..{len(KINDS) - 1}")
    bad((db.cls < 0) | (db.cls >= N_CLASSES), f"expected class in 0..{N_CLASSES - 1}")
    bad(pos < 0, "expected a row of the train split")
    bad((db.start < 0) | (db.length < 1) | (db.start + db.length > t_len), f"expected a span inside 0..{t_len}")
    bad(((db.kind == START) | (db.kind == END)) & (db.length != BORDER_LENGTH), f"expected length {BORDER_LENGTH}")
    # The labels each entry must carry: start (BG, c), end (c, BG), continue c.., background BG..
    offs = np.arange(t_len)
    inside = offs < db.length[:, None]
    want = np.where((db.kind == BACKGROUND_RUN)[:, None], BACKGROUND, db.cls[:, None]).repeat(t_len, 1)
    want[(db.kind == START), 0] = BACKGROUND
    want[(db.kind == END), 1] = BACKGROUND
    seg = data.segment_labels.numpy()[np.clip(pos, 0, None)[:, None], np.clip(db.start[:, None] + offs, 0, t_len - 1)]
    bad(((seg != want) & inside).any(1), "its segment labels do not match its class and kind")
    bad((db.kind == BACKGROUND_RUN) & (data.video_labels.numpy()[pos] != db.cls),
        "a background entry's class must be its video's class")


def _positions(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each queried h5 row in `rows`, -1 where absent."""
    order = np.argsort(rows)
    at = np.clip(np.searchsorted(rows[order], query), 0, len(rows) - 1)
    found = rows[order][at] == query
    return np.where(found, order[at], -1)


def summary_table(db: Database) -> pd.DataFrame:
    """One row per (class, kind): database entries per length, and the total."""
    t_len = int(db.length.max()) if len(db) else N_SEGMENTS
    rows = []
    for (c, k), group in pd.DataFrame({"c": db.cls, "k": db.kind, "n": db.length}).groupby(["c", "k"]):
        counts = np.bincount(group["n"], minlength=t_len + 1)[1:]
        rows.append({"class": c, "name": CLASS_NAMES[c][:24], "kind": KINDS[k], "entries": len(group),
                     **{f"L{n}": int(counts[n - 1]) for n in range(1, t_len + 1)}})
    return pd.DataFrame(rows)


class ReplicaSampler:
    """Algorithm 1 for a training split: call it with row positions of a batch (LongTensor (B,)),
    get one replica per video, (audio (B,T,128), visual (B,T,512)), same segment labels.

    Each video's sequence (with fallbacks resolved) is fixed by the labels, so it is planned once;
    a call only draws one entry per sub-event and gathers features by index. Randomness comes from
    its own numpy Generator, seeded from the run seed; `state_dict`/`load_state_dict` restore it
    exactly for a resumed run.
    """

    STREAM = 0x5E9  # mixed with the run seed so replica draws do not mirror the batch shuffle

    def __init__(self, data: SplitData, db: Database, seed: int):
        self.data = data
        self.seed = seed
        self.rng = np.random.default_rng([seed, self.STREAM])
        self.counts = {"replicas": 0, "sub_events": 0, "fallbacks": 0, "copied": 0}
        self.database = db.digest()
        self._plan(db)

    def _plan(self, db: Database) -> None:
        n_videos, t_len = self.data.segment_labels.shape
        rows = self.data.rows.numpy()
        self.entry_pos = _positions(rows, db.row)
        self.entry_start = db.start
        # Database blocks: key -> (first entry, count). Sorted table, so blocks are contiguous and
        # within a block entries are sorted by row, so a video's own entries are a contiguous run.
        blocks: dict[tuple[int, int, int], tuple[int, int]] = {}
        keys = np.stack([db.cls, db.kind, db.length], 1) if len(db) else np.zeros((0, 3), np.int64)
        if len(db):
            change = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1
            firsts = np.r_[0, change]
            for lo, hi in zip(firsts.tolist(), np.r_[change, len(db)].tolist()):
                blocks[tuple(keys[lo].tolist())] = (lo, hi - lo)

        def candidates(p: int, cls: int, kind: int, length: int) -> tuple[int, int, int, int]:
            """(first entry, count, first own entry, own count) of the database for this key."""
            lo, n = blocks.get((cls, kind, length), (0, 0))
            block_rows = db.row[lo:lo + n]
            own_lo, own_hi = np.searchsorted(block_rows, rows[p], "left"), np.searchsorted(block_rows, rows[p], "right")
            return lo, n, lo + int(own_lo), int(own_hi - own_lo)

        def longest(p: int, cls: int, kind: int, limit: int) -> int:
            """The longest length <= limit for which other videos offer an entry, else 0."""
            for length in range(limit, 0, -1):
                _, n, _, own = candidates(p, cls, kind, length)
                if n > own:
                    return length
            return 0

        plans = []
        self.video_sub_events = np.zeros(n_videos, np.int64)
        self.video_fallbacks = np.zeros(n_videos, np.int64)
        labels, video_labels = self.data.segment_labels.tolist(), self.data.video_labels.tolist()
        for p in range(n_videos):
            pieces = []  # (dst start, length, first entry, count, first own entry, own count)
            sequence = identify(labels[p], video_labels[p])
            self.video_sub_events[p] = len(sequence)
            for se in sequence:
                lo, n, own_lo, own_n = candidates(p, se.cls, se.kind, se.length)
                if n > own_n:
                    pieces.append((se.start, se.length, lo, n, own_lo, own_n))
                    continue
                self.video_fallbacks[p] += 1  # Algorithm 1 line 1: re-split into sub-events with samples
                if se.kind in (START, END):
                    bg, ev = (se.start, se.start + 1) if se.kind == START else (se.start + 1, se.start)
                    parts = sorted([(bg, 1, BACKGROUND_RUN, video_labels[p]), (ev, 1, CONTINUE, se.cls)])
                else:
                    parts = [(se.start, se.length, se.kind, se.cls)]
                for first, length, kind, cls in parts:
                    step = longest(p, cls, kind, length) or length  # 0: nothing to sample; copied below
                    for s in range(first, first + length, step):
                        piece = min(step, first + length - s)
                        pieces.append((s, piece, *candidates(p, cls, kind, piece)))
            plans.append(pieces)
        width = max((len(pl) for pl in plans), default=1)
        plan = np.zeros((n_videos, width, 6), np.int64)
        self.valid = np.zeros((n_videos, width), bool)
        self.seg_piece = np.zeros((n_videos, t_len), np.int64)  # which piece fills each segment
        for p, pieces in enumerate(plans):
            plan[p, :len(pieces)] = pieces
            self.valid[p, :len(pieces)] = True
            for i, (first, length, *_) in enumerate(pieces):
                self.seg_piece[p, first:first + length] = i
        self.dst, self.lo, self.n, self.own_lo, self.own_n = (plan[..., i] for i in (0, 2, 3, 4, 5))
        # A piece no other video offers is copied from the original itself.
        self.video_copied = (self.valid & (self.n - self.own_n <= 0)).sum(1)

    def sample(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each replica segment comes from: (video position (B,T), segment (B,T)) in the split."""
        idx = index.numpy()
        dst, lo, n, own_lo, own_n = (a[idx] for a in (self.dst, self.lo, self.n, self.own_lo, self.own_n))
        avail = n - own_n
        # Uniform over the block's entries, skipping the original's own (a contiguous run).
        pick = lo + np.floor(self.rng.random(lo.shape) * avail).astype(np.int64)
        pick = np.where(pick >= own_lo, pick + own_n, pick)
        copy = avail <= 0
        if len(self.entry_pos):
            pick = np.where(copy, 0, pick)
            src_video = np.where(copy, idx[:, None], self.entry_pos[pick])
            src_first = np.where(copy, dst, self.entry_start[pick])
        else:  # an empty database: every piece is copied
            src_video, src_first = np.broadcast_to(idx[:, None], dst.shape), dst
        piece = self.seg_piece[idx]  # (B, T)
        t = np.arange(piece.shape[1])
        video = np.take_along_axis(src_video, piece, 1)
        segment = np.take_along_axis(src_first, piece, 1) + t - np.take_along_axis(dst, piece, 1)
        self.counts["replicas"] += len(idx)
        self.counts["sub_events"] += int(self.video_sub_events[idx].sum())
        self.counts["fallbacks"] += int(self.video_fallbacks[idx].sum())
        self.counts["copied"] += int(self.video_copied[idx].sum())
        return torch.from_numpy(video), torch.from_numpy(segment)

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        video, segment = self.sample(index)
        flat = (video * segment.shape[1] + segment).reshape(-1)  # rows of the (N*T, D) views
        audio, visual = self.data.audio, self.data.visual
        return (audio.reshape(-1, audio.shape[-1]).index_select(0, flat).view(*video.shape, -1),
                visual.reshape(-1, visual.shape[-1]).index_select(0, flat).view(*video.shape, -1))

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng": self.rng.bit_generator.state, "counts": dict(self.counts),
                "database": self.database}

    def load_state_dict(self, state: dict) -> None:
        """Continue a saved stream. The database must be the one it was saved with: the same
        draws on other entries would silently give other replicas."""
        if state["database"] != self.database:
            raise AvelError(f"replicate: the sub-event database (entries {self.database[:12]}) differs from the "
                            f"one this run started with (entries {state['database'][:12]}); resume with that one")
        self.rng.bit_generator.state = state["rng"]
        self.counts = dict(state["counts"])


def replica_fn(train: SplitData, data_dir: str | Path, seed: int, subevents: str | Path | None = None,
               note: Callable[[str], None] | None = None) -> ReplicaSampler:
    """The replica sampler for a training run, and one `note` saying which database it uses.

    subevents given: that file, which must exist and match the training data (else AvelError).
    Otherwise the file at the default location when it matches the data; when it is absent or
    stale, a database built in memory from the training labels (what build-subevents would write).
    """
    note = note or (lambda msg: print(msg, file=sys.stderr))
    if subevents is not None:
        db = load_database(subevents)
        check_database(db, train, subevents)
        note(f"replicate: sub-event database {subevents} ({len(db)} entries)")
        return ReplicaSampler(train, db, seed)
    path = default_path(data_dir)
    if path.is_file():
        try:
            db = load_database(path)
            check_database(db, train, path)
            note(f"replicate: sub-event database {path} ({len(db)} entries)")
            return ReplicaSampler(train, db, seed)
        except AvelError as e:  # a stale cache: the labels still give the right database
            note(f"replicate: ignoring {e}; built the database in memory instead")
    else:
        note(f"replicate: no sub-event database at {path}; built it in memory from the training labels "
             f"(`avel-dgl build-subevents` saves it)")
    return ReplicaSampler(train, build_database(train), seed)
