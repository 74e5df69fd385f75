"""`extract` at scale: --jobs 2 (decoding workers feeding the networks) and two ranks of a gloo
process group (as under torchrun) write the bytes a one-process run writes, on generated clips;
a rerun over a finished folder builds no network and leaves the same bytes.

Small on purpose: 2-s clips, 2 frames per segment, VGG19 replaced by video_files' SmallVisual,
VGGish with seeded random weights."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from avel_dgl.video import extract, vggish
from helpers import invoke, run_ranks
from video_files import SmallVisual, make_video

FILES = ("audio_feature.h5", "visual_feature.h5", "videos.csv")
OPTIONS = ["--frames-per-segment", "2", "--batch-size", "3", "--quiet"]


def small_nets() -> extract.Networks:
    """The same networks in every process: seeded random VGGish, SmallVisual."""
    torch.manual_seed(0)
    return extract.Networks(vggish.AudioNet(None), SmallVisual())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    for i in range(5):  # different lengths, rates and sounds; one without audio
        make_video(d / f"clip{i}.mkv", seconds=2 + i % 2, fps=8 + i, square=(i % 2, 2), tone_span=(0.5 * i, 3),
                   audio_rate=None if i == 3 else (16000, 44100)[i % 2], channels=1 + i % 2)
    (d / "broken.mp4").write_bytes(b"not a video" * 100)
    return d


def _extract(clips: Path, out: Path, *args: str):
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the same warning in a later run of this process is shown again
        return invoke(["extract", clips, "--out", out, *OPTIONS, *args])


def _small_networks(patch, built: list | None = None, mark=1) -> None:
    """extract builds the small random networks (`built` notes each build) under weights of a
    fixed identity, instead of locating the published files."""
    patch.setattr(extract, "weights_identity", lambda *a, **k: "test weights")
    patch.setattr(extract, "load_networks", lambda *a, **k: (built.append(mark) if built is not None else None)
                  or small_nets())


def _bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def one_process(clips, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("one") / "out"
    with pytest.MonkeyPatch.context() as m:
        _small_networks(m)
        result = _extract(clips, out)
    assert result.exit_code == 0, result.output
    assert "5 videos x 3 segments, 1 failed" in result.stdout
    return _bytes(out)


def test_jobs_2_writes_the_one_process_bytes(clips, tmp_path, one_process, monkeypatch):
    _small_networks(monkeypatch)
    decoded_in = tmp_path / "pids"
    decoded_in.mkdir()
    network_inputs = extract.network_inputs

    def noting_the_process(*args):
        (decoded_in / str(os.getpid())).touch()
        return network_inputs(*args)
    monkeypatch.setattr(extract, "network_inputs", noting_the_process)
    result = _extract(clips, tmp_path / "out", "--jobs", "2")
    assert result.exit_code == 0, result.output
    pids = {int(p.name) for p in decoded_in.iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids  # decoded by two worker processes
    assert _bytes(tmp_path / "out") == one_process
    assert sum("broken.mp4" in line for line in result.stderr.splitlines()) == 1  # one warning line


def _rank(rank: int, world: int, port: int, clips: Path, out: Path, jobs: str) -> None:
    """One rank of a 2-process gloo group joined as under torchrun, running the extract command:
    one rank per machine (LOCAL_WORLD_SIZE 1), so each has the one-process run's threads. (Ranks
    sharing a machine divide its cores; torch's convolutions may then sum in another order, and
    visual features differ in the last bits.)"""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK="0",
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE="1")
    built, extracted = [], []
    _small_networks(pytest.MonkeyPatch(), built, rank)  # this process is the rank's own
    extract_video = extract.extract_video
    extract.extract_video = lambda video, *a: extracted.append(video) or extract_video(video, *a)
    result = _extract(clips, out, "--jobs", jobs)
    (out.parent / f"rank{rank}.txt").write_text(f"{result.exit_code}\n{len(built)}\n{len(extracted)}\n"
                                                f"{result.stdout}")


def _two_ranks(clips: Path, out: Path, jobs: str = "1") -> list[list[str]]:
    run_ranks(_rank, (clips, out, jobs))
    return [(out.parent / f"rank{r}.txt").read_text().splitlines() for r in range(2)]


def test_two_ranks_write_the_one_process_bytes_and_a_rerun_resumes(clips, tmp_path, one_process, monkeypatch):
    out = tmp_path / "out"
    ranks = _two_ranks(clips, out)
    assert [r[0] for r in ranks] == ["0", "0"]
    # Each rank built its networks and extracted its share: of broken.mp4, clip0, ..., clip4,
    # rank 0 has broken.mp4 (unreadable), clip1 and clip3; rank 1 clip0, clip2 and clip4.
    assert [r[1:3] for r in ranks] == [["1", "2"], ["1", "3"]]
    assert ranks[0][3].startswith("5 videos x 3 segments, 1 failed") and len(ranks[1]) == 3  # rank 0 reports
    assert _bytes(out) == one_process
    assert len(list((out / extract.PARTS_DIR).glob("*.npz"))) == 5  # one store, each video once
    # A rerun finds every video stored: no networks, the same bytes.
    built = []
    _small_networks(monkeypatch, built)
    assert _extract(clips, out).exit_code == 0 and not built
    assert _bytes(out) == one_process


def test_jobs_must_be_positive(clips, tmp_path):
    result = _extract(clips, tmp_path / "out", "--jobs", "0")
    assert result.exit_code != 0 and "--jobs" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(extract.AvelError, match="--jobs: expected a positive integer, found 0"):
        extract.extract_parts([], tmp_path / "parts", extract.Settings(), small_nets, jobs=0, weights_id="random")


def test_under_torchrun_a_bad_option_is_printed_by_rank_0_alone(clips, tmp_path, monkeypatch):
    """Every rank meets the same bad option before the group is joined: rank 0 prints the one
    line, the others exit with its code and print nothing (not one line per rank)."""
    lines = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        result = _extract(clips, tmp_path / "out", "--frame-rule", "release-index", "--device", "cpu",
                          "--frames-per-segment", "0")
        assert result.exit_code == 2
        lines[rank] = result.stderr.strip().splitlines()
    assert lines == {"0": ["avel-dgl: error: --frames-per-segment: expected 1 to 60 (the AVE recipe: 16), found 0"],
                     "1": []}
