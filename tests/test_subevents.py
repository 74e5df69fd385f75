"""Sub-event rules, databases, their file, and the replica sampler (section 3.4, Algorithm 1)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from avel_dgl.data.dataset import SplitData
from avel_dgl.data.subevents import (BACKGROUND_RUN, CONTINUE, END, START, ReplicaSampler,
                                     build_database, check_database, default_path, identify, load_database,
                                     replica_fn, save_database)
from avel_dgl.errors import AvelError
from avel_dgl.format import BACKGROUND as BG
from helpers import SHARED_AVE

S, C, E, B = START, CONTINUE, END, BACKGROUND_RUN


def seq(labels, video_label=3):
    return [(se.kind, se.cls, se.start, se.length) for se in identify(labels, video_label)]


# --- identification rules -------------------------------------------------------------------

def test_identify_interior_event_has_background_start_continue_end_background():
    assert seq([BG, BG, 3, 3, 3, 3, 3, BG, BG, BG]) == [(B, 3, 0, 1), (S, 3, 1, 2), (C, 3, 3, 3), (E, 3, 6, 2),
                                                        (B, 3, 8, 2)]


def test_identify_full_length_event_is_one_continue():
    assert seq([3] * 10) == [(C, 3, 0, 10)]


def test_identify_event_touching_first_segment_opens_with_continue():
    assert seq([3] * 6 + [BG] * 4) == [(C, 3, 0, 5), (E, 3, 5, 2), (B, 3, 7, 3)]


def test_identify_event_touching_last_segment_closes_with_continue():
    assert seq([BG] * 4 + [3] * 6) == [(B, 3, 0, 3), (S, 3, 3, 2), (C, 3, 5, 5)]


def test_identify_two_segment_event_is_start_then_end_without_continue():
    assert seq([BG, BG, 3, 3, BG, BG, BG, BG, BG, BG]) == [(B, 3, 0, 1), (S, 3, 1, 2), (E, 3, 3, 2), (B, 3, 5, 5)]


def test_identify_one_segment_event_gets_a_start_only_and_shared_context_is_not_reused():
    # Run at 1: start (0,1); its end would reuse segment 1. Run at 7: segment 6 was taken by the
    # end of the run at 4-5, so it has no start.
    assert seq([BG, 3, BG, BG, 3, 3, BG, 3, BG, BG]) == [(S, 3, 0, 2), (B, 3, 2, 1), (S, 3, 3, 2), (E, 3, 5, 2),
                                                         (E, 3, 7, 2), (B, 3, 9, 1)]


def test_identify_touching_runs_of_two_classes_have_no_border_between_them():
    assert seq([3, 3, 5, 5, 5, BG, BG, BG, BG, BG]) == [(C, 3, 0, 2), (C, 5, 2, 2), (E, 5, 4, 2), (B, 3, 6, 4)]


def test_identify_background_only_video_is_one_background_run_of_its_class():
    assert seq([BG] * 10, video_label=7) == [(B, 7, 0, 10)]


def test_identify_tiles_the_video_with_label_patterns_matching_kinds():
    rng = np.random.default_rng(0)
    for _ in range(500):
        labels = np.where(rng.random(10) < 0.4, BG, rng.choice([2, 5], 10)).tolist()
        out = identify(labels, 2)
        assert [se.start for se in out] == np.cumsum([0] + [se.length for se in out])[:-1].tolist()
        assert sum(se.length for se in out) == 10
        for se in out:
            span = labels[se.start:se.start + se.length]
            want = {S: [BG, se.cls], E: [se.cls, BG], C: [se.cls] * se.length, B: [BG] * se.length}[se.kind]
            assert span == want, (labels, se)


# --- a hand-made training split -------------------------------------------------------------

HAND_LABELS = [
    [BG, BG, 3, 3, 3, 3, 3, BG, BG, BG],  # row 10: b1 s c3 e b2
    [BG, 3, 3, 3, 3, BG, BG, BG, BG, BG],  # row 11: s c2 e b4
    [3] * 10,  # row 12: c10
    [BG, BG, BG] + [5] * 7,  # row 13: b2 s c6 (the only class-5 video)
]


def hand_split() -> SplitData:
    """Features encode where they come from: audio[p, t] = (p, t, 0...), visual = 100 p + t."""
    n = len(HAND_LABELS)
    audio = torch.zeros(n, 10, 128)
    audio[:, :, 0] = torch.arange(n)[:, None].float()
    audio[:, :, 1] = torch.arange(10).float()
    visual = (100 * torch.arange(n)[:, None, None] + torch.arange(10)[None, :, None]).float().expand(n, 10, 512)
    return SplitData(audio, visual.contiguous(), torch.tensor(HAND_LABELS), torch.tensor([3, 3, 3, 5]),
                     torch.tensor([10, 11, 12, 13]))


def windows(row, first, length, cls, kind):
    """Every contiguous window of a run: lengths 1..L at every offset."""
    return {(cls, kind, n, row, first + o) for n in range(1, length + 1) for o in range(length - n + 1)}


def test_database_holds_exactly_the_hand_computed_entries():
    db = build_database(hand_split())
    got = set(zip(db.cls.tolist(), db.kind.tolist(), db.length.tolist(), db.row.tolist(), db.start.tolist()))
    want = {
        (3, S, 2, 10, 1), (3, S, 2, 11, 0), (5, S, 2, 13, 2),
        (3, E, 2, 10, 6), (3, E, 2, 11, 4),
        # continue runs with all their windows: row 10 at 3 (L3), row 11 at 2 (L2), row 12 at 0 (L10)
        (3, C, 1, 10, 3), (3, C, 1, 10, 4), (3, C, 1, 10, 5), (3, C, 2, 10, 3), (3, C, 2, 10, 4), (3, C, 3, 10, 3),
        (3, C, 1, 11, 2), (3, C, 1, 11, 3), (3, C, 2, 11, 2),
        *windows(12, 0, 10, 3, C), *windows(13, 4, 6, 5, C),
        # background runs: row 10 at 0 (L1) and 8 (L2), row 11 at 6 (L4), row 13 at 0 (L2)
        (3, B, 1, 10, 0), (3, B, 1, 10, 8), (3, B, 1, 10, 9), (3, B, 2, 10, 8),
        *windows(11, 6, 4, 3, B), *windows(13, 0, 2, 5, B),
    }
    assert got == want
    assert len(db) == len(want)  # no duplicates
    assert all(a.dtype == np.int64 for a in (db.cls, db.kind, db.length, db.row, db.start))


def test_replica_labels_equal_the_original_and_segments_come_from_same_class_videos():
    data = hand_split()
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    idx = torch.arange(len(data))
    for _ in range(50):
        video, segment = sampler.sample(idx)
        assert torch.equal(data.segment_labels[video, segment], data.segment_labels)
        assert torch.equal(data.video_labels[video], data.video_labels[:, None].expand(-1, 10))


def test_replica_sub_events_come_from_videos_of_the_original_class():
    """Two classes with the same label patterns, two videos each: every sub-event has a sample in
    the other video of its class, and in the videos of the other class too, background runs even
    with the same labels. The replica of each video must take every segment from the other video
    of its own class."""
    patterns = [[BG, BG] + [c] * 5 + [BG] * 3 for c in (3, 3, 5, 5)]
    n = len(patterns)
    data = SplitData(torch.zeros(n, 10, 128), torch.zeros(n, 10, 512), torch.tensor(patterns),
                     torch.tensor([3, 3, 5, 5]), torch.tensor([20, 21, 22, 23]))
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    partner = torch.tensor([1, 0, 3, 2])  # the other video of the same class
    for _ in range(20):
        video, segment = sampler.sample(torch.arange(n))
        assert torch.equal(video, partner[:, None].expand(-1, 10))
        assert torch.equal(data.segment_labels[video, segment], data.segment_labels)
    assert int(sampler.video_fallbacks.sum()) == 0


def test_replica_features_are_gathered_from_the_sampled_segments():
    data = hand_split()
    a = ReplicaSampler(data, build_database(data), seed=3)
    b = ReplicaSampler(data, build_database(data), seed=3)
    idx = torch.tensor([2, 0, 1])
    audio, visual = a(idx)
    video, segment = b.sample(idx)
    assert audio.shape == (3, 10, 128) and visual.shape == (3, 10, 512)
    assert torch.equal(audio[..., 0].long(), video) and torch.equal(audio[..., 1].long(), segment)
    assert torch.equal(visual[..., 0].long(), 100 * video + segment)


def test_replicas_never_use_the_original_when_other_videos_offer_samples():
    data = hand_split()
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    for _ in range(200):
        video, _ = sampler.sample(torch.tensor([0, 1, 2]))  # class-3 videos: every piece has other sources
        assert not (video == torch.tensor([0, 1, 2])[:, None]).any()


def test_fallback_resplits_an_unmatched_sub_event_into_the_longest_available_pieces():
    # Row 12's continue of length 10 has no other length-10 continue: the longest other one is
    # row 10's length 3 (one window, at 3), so segments 0-2, 3-5, 6-8 are all exactly row 10's 3-5.
    data = hand_split()
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    for _ in range(20):
        video, segment = sampler.sample(torch.tensor([2]))
        assert video[0, :9].tolist() == [0] * 9 and segment[0, :9].tolist() == [3, 4, 5] * 3
        assert data.segment_labels[video[0, 9], segment[0, 9]] == 3


def test_fallback_counts_and_copies_for_a_class_with_a_single_video():
    data = hand_split()
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    video, segment = sampler.sample(torch.arange(4))
    # Row 13 (class 5) has no other video: its background, start and continue are re-split and
    # still unmatched, so its replica is a copy: b2 (1 piece), start -> bg1 + c1 (2), c6 (1).
    assert torch.equal(video[3], torch.full((10,), 3)) and torch.equal(segment[3], torch.arange(10))
    # Fallbacks: row 11's background of length 4 (others have at most 2), row 12's continue of
    # length 10, and row 13's three sub-events. Sub-events: 5 + 4 + 1 + 3.
    assert sampler.counts == {"replicas": 4, "sub_events": 13, "fallbacks": 5, "copied": 4}
    sampler.sample(torch.tensor([3, 3]))
    assert sampler.counts == {"replicas": 6, "sub_events": 19, "fallbacks": 11, "copied": 12}


def test_draws_are_uniform_over_the_other_videos_entries():
    # Row 11's continue of length 2 (segments 2-3) has 11 candidates from other videos: row 10's
    # windows at 3 and 4, and row 12's nine windows at 0..8.
    data = hand_split()
    sampler = ReplicaSampler(data, build_database(data), seed=1)
    draws = 2200
    video, segment = sampler.sample(torch.ones(draws, dtype=torch.long))
    sources = list(zip(video[:, 2].tolist(), segment[:, 2].tolist()))
    counts = {src: sources.count(src) for src in set(sources)}
    assert set(counts) == {(0, 3), (0, 4)} | {(2, s) for s in range(9)}
    assert all(150 < c < 250 for c in counts.values()), counts  # expected 200 each
    assert torch.equal(segment[:, 3], segment[:, 2] + 1) and torch.equal(video[:, 3], video[:, 2])


def test_same_seed_same_replicas_and_state_dict_restores_the_stream():
    data = hand_split()
    db = build_database(data)
    idx = torch.arange(4)
    a, b, other = (ReplicaSampler(data, db, seed=s) for s in (5, 5, 6))
    runs = [torch.cat([torch.cat(s.sample(idx)) for _ in range(10)]) for s in (a, b, other)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])

    state = json.loads(json.dumps(a.state_dict()))  # plain data: fits a checkpoint or a json file
    expected = [a.sample(idx) for _ in range(3)]
    resumed = ReplicaSampler(data, db, seed=0)
    resumed.load_state_dict(state)
    assert resumed.counts == {k: v for k, v in state["counts"].items()}
    for want in expected:
        assert all(torch.equal(x, y) for x, y in zip(resumed.sample(idx), want))
    assert resumed.counts == a.counts

    fewer = build_database(data)
    fewer.row, fewer.start = fewer.row[1:], fewer.start[1:]
    fewer.cls, fewer.kind, fewer.length = fewer.cls[1:], fewer.kind[1:], fewer.length[1:]
    with pytest.raises(AvelError, match="differs from the one this run started with"):
        ReplicaSampler(data, fewer, seed=0).load_state_dict(state)


# --- the database file ----------------------------------------------------------------------

def test_saved_database_loads_back_identically_and_is_byte_deterministic(tmp_path):
    data = hand_split()
    db = build_database(data)
    save_database(db, tmp_path / "a.h5")
    save_database(build_database(data), tmp_path / "b.h5")
    back = load_database(tmp_path / "a.h5")
    for field in ("cls", "kind", "length", "row", "start"):
        assert np.array_equal(getattr(back, field), getattr(db, field))
    assert back.fingerprint == db.fingerprint
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    check_database(back, data, tmp_path / "a.h5")  # matches its own data: no error


def test_database_of_other_data_is_refused_with_one_line(tmp_path):
    data = hand_split()
    db = build_database(data)
    other = hand_split()
    other.segment_labels[1, 8] = 3  # one label changed
    with pytest.raises(AvelError, match="built from other training data") as e:
        check_database(db, other, tmp_path / "x.h5")
    assert "\n" not in str(e.value) and "x.h5" in str(e.value)
    reordered = hand_split().subset(torch.tensor([1, 0, 2, 3]))
    with pytest.raises(AvelError, match="built from other training data"):
        check_database(db, reordered, "x")


def test_edited_database_entry_with_wrong_labels_is_refused(tmp_path):
    data = hand_split()
    save_database(build_database(data), tmp_path / "db.h5")
    with h5py.File(tmp_path / "db.h5", "r+") as f:
        starts = f["start"][()]
        kinds = f["kind"][()]
        i = int(np.flatnonzero(kinds == START)[0])
        starts[i] += 1  # a start entry now points one segment late: (c, c) instead of (BG, c)
        f["start"][...] = starts
    db = load_database(tmp_path / "db.h5")
    with pytest.raises(AvelError, match=r"db\.h5: entry \d+ .*segment labels do not match"):
        check_database(db, data, tmp_path / "db.h5")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "sub-event database not found"),
    (lambda p: p.write_text("not hdf5"), "not a readable HDF5 file"),
    (lambda p: h5py.File(p, "w").close(), "expected a sub-event database of format 1, found format None"),
])
def test_unusable_database_files_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "db.h5"
    make(path)
    with pytest.raises(AvelError, match=message) as e:
        load_database(path)
    assert "\n" not in str(e.value)


def test_interrupted_save_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    data = hand_split()
    path = tmp_path / "db.h5"
    save_database(build_database(data), path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(AvelError, match="db.h5: cannot write, .* is full .*; the sub-event database was not written"):
        save_database(build_database(data), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.h5"]


# --- choosing the database for a run ---------------------------------------------------------

def test_replica_fn_uses_the_default_file_builds_in_memory_or_refuses_an_explicit_bad_file(tmp_path):
    data = hand_split()
    notes = []
    replica_fn(data, tmp_path, seed=0, note=notes.append)
    assert len(notes) == 1 and "no sub-event database" in notes[0] and "built it in memory" in notes[0]

    save_database(build_database(data), default_path(tmp_path))
    notes.clear()
    replica_fn(data, tmp_path, seed=0, note=notes.append)
    assert notes == [f"replicate: sub-event database {default_path(tmp_path)} ({len(build_database(data))} entries)"]

    stale = hand_split()
    stale.segment_labels[0, 0] = 3
    notes.clear()
    sampler = replica_fn(stale, tmp_path, seed=0, note=notes.append)  # stale default: rebuilt, with a note
    assert len(notes) == 1 and "ignoring" in notes[0] and "built from other training data" in notes[0]
    video, segment = sampler.sample(torch.arange(4))
    assert torch.equal(stale.segment_labels[video, segment], stale.segment_labels)

    with pytest.raises(AvelError, match="built from other training data"):
        replica_fn(stale, tmp_path, seed=0, subevents=default_path(tmp_path), note=notes.append)
    with pytest.raises(AvelError, match="missing.h5: sub-event database not found"):
        replica_fn(data, tmp_path, seed=0, subevents=tmp_path / "missing.h5", note=notes.append)


@pytest.mark.skipif(not (SHARED_AVE / "labels_closs.h5").is_file(), reason="needs ../shared/ave")
def test_real_ave_training_labels_give_label_identical_replicas_with_few_fallbacks():
    # Segment labels of the real train split: the span of labels_closs.h5, the class of mil_labels.h5.
    rows = h5py.File(SHARED_AVE / "train_order.h5", "r")["order"][()]
    event = h5py.File(SHARED_AVE / "labels_closs.h5", "r")["avadataset"][()][rows] > 0.5
    cls = h5py.File(SHARED_AVE / "mil_labels.h5", "r")["avadataset"][()][rows].argmax(1)
    n = len(rows)
    data = SplitData(torch.zeros(n, 10, 1), torch.zeros(n, 10, 1), torch.from_numpy(np.where(event, cls[:, None], BG)),
                     torch.from_numpy(cls), torch.from_numpy(rows.astype(np.int64)))
    sampler = ReplicaSampler(data, build_database(data), seed=0)
    video, segment = sampler.sample(torch.arange(n))
    assert torch.equal(data.segment_labels[video, segment], data.segment_labels)
    assert torch.equal(data.video_labels[video], data.video_labels[:, None].expand(-1, 10))
    assert (video != torch.arange(n)[:, None]).all()  # nothing copied from the original
    assert sampler.counts["fallbacks"] < 0.01 * sampler.counts["sub_events"]  # Algorithm 1 almost always matches
