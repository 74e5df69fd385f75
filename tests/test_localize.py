"""`avel-dgl localize`: windows over long videos, and videos in, events out, with a tiny DPNet
trained on features of generated videos (an event = the coloured square and the tone together),
so the returned intervals must match the generated content. Feature networks: random weights,
VGG19 swapped for video_files' small stand-in (no downloads)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from avel_dgl import graph, localize
from avel_dgl.config import ModelConfig, get_preset
from avel_dgl.errors import AvelError
from avel_dgl.video import extract, vggish
from helpers import invoke
from video_files import SmallVisual, make_video, train_tiny_detector

EVENT_CLASS = 0  # "Church bell"
F = 2  # frames per segment in these tests


def _tiny_model(seed: int = 0):
    from avel_dgl.nn.dpnet import build

    config = get_preset("small")
    config.model = ModelConfig(width=16, blocks=1, norm="layer")
    torch.manual_seed(seed)
    return build(config, graph.DEFAULT_KERNEL), config


def test_window_starts():
    assert localize.window_starts(7) == [0] and localize.window_starts(10) == [0]
    assert localize.window_starts(20) == [0, 10] and localize.window_starts(25) == [0, 10, 15]


def test_windows_average_where_they_overlap_and_short_videos_run_whole():
    model, _ = _tiny_model()
    model.eval()
    rng = np.random.default_rng(0)
    audio, visual = rng.normal(size=(25, 128)).astype(np.float32), rng.normal(size=(25, 512)).astype(np.float32)
    p = localize.video_probs(model, audio, visual, "windows")
    w = {s: localize.video_probs(model, audio[s:s + 10], visual[s:s + 10], "whole") for s in (0, 10, 15)}
    np.testing.assert_allclose(p[:10], w[0], atol=1e-6)
    np.testing.assert_allclose(p[10:15], w[10][:5], atol=1e-6)
    np.testing.assert_allclose(p[15:20], (w[10][5:] + w[15][:5]) / 2, atol=1e-6)
    np.testing.assert_allclose(p[20:], w[15][5:], atol=1e-6)
    assert not np.allclose(localize.video_probs(model, audio, visual, "whole"), p, atol=1e-4)
    np.testing.assert_allclose(localize.video_probs(model, audio[:7], visual[:7], "windows"),
                               localize.video_probs(model, audio[:7], visual[:7], "whole"))
    with pytest.raises(AvelError, match="^--mode: expected one of whole, windows, found 'window'$"):
        localize.video_probs(model, audio, visual, "window")  # a typo never runs the whole-video path


def _event_video(path: Path, span, seconds: float = 10.0) -> Path:
    return make_video(path, seconds=seconds, square=span, tone_span=span)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return extract.Networks(vggish.AudioNet(), SmallVisual())


TRAIN_SPANS = [(0, 3), (2, 5), (3, 6), (4, 8), (6, 10), (1, 9), (0, 0), (5, 7), (7, 9), (0, 10)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, nets) -> Path:
    """A tiny DPNet trained (SEL) on features of generated videos whose event segments are the
    ones showing the square and playing the tone together."""
    d = tmp_path_factory.mktemp("train_videos")
    settings = extract.Settings(frames_per_segment=F, pooled=True)
    parts = [extract.extract_video(_event_video(d / f"{i}.mkv", s), nets, settings) for i, s in enumerate(TRAIN_SPANS)]
    return train_tiny_detector(np.stack([p.audio for p in parts]), np.stack([p.visual for p in parts]),
                               TRAIN_SPANS, EVENT_CLASS, d / "best.pt")


@pytest.fixture
def patched(monkeypatch, nets):
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        return nets
    monkeypatch.setattr(localize, "load_networks", fake)
    monkeypatch.setattr(localize, "weights_identity", lambda *args, **kwargs: "test weights")
    return calls


def test_localize_returns_the_generated_events(tmp_path, checkpoint, patched):
    short = _event_video(tmp_path / "clip.mkv", (3, 6))
    long = _event_video(tmp_path / "long.mkv", (12, 17), seconds=25)
    cache, out, page = tmp_path / "cache", tmp_path / "events.json", tmp_path / "timeline.html"
    args = ["localize", short, long, "--checkpoint", checkpoint, "--out", out, "--html", page,
            "--feature-cache", cache, "--frames-per-segment", F, "--quiet"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())["videos"]
    assert [r["path"] for r in records] == [str(short), str(long)]
    assert [(e["name"], e["start"], e["end"]) for e in records[0]["events"]] == [("Church bell", 3.0, 6.0)]
    assert [(e["name"], e["start"], e["end"]) for e in records[1]["events"]] == [("Church bell", 12.0, 17.0)]
    assert len(records[1]["segment_probs"]) == 25
    html = page.read_text()
    assert html.count("<img ") == 10 + 25 and html.count('class="bar"') == 2
    assert re.search(r'class="bar" style="left:48\.0000%;width:20\.0000%;[^>]*>Church bell \d\.\d\d<', html)
    # CSV output: the same events with the path column; the cache is reused (no network built).
    built = len(patched)
    result = invoke([*args[:5], "--out", tmp_path / "events.csv", *args[9:]])
    assert result.exit_code == 0, result.output
    assert len(patched) == built
    with open(tmp_path / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(Path(r["path"]).name, r["start"], r["end"]) for r in rows] == [("clip.mkv", "3.0", "6.0"),
                                                                              ("long.mkv", "12.0", "17.0")]


def test_localize_bad_inputs_are_one_line_and_write_nothing(tmp_path, checkpoint, patched):
    clip = _event_video(tmp_path / "clip.mkv", (3, 6))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    out = tmp_path / "e.json"
    base = ["--checkpoint", checkpoint, "--feature-cache", tmp_path / "cache", "--frames-per-segment", F, "--quiet"]
    r = invoke(["localize", tmp_path / "bad.mp4", "--out", out, *base])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code != 0 and lines[-1].startswith("avel-dgl: error: no video could be read")
    assert lines[0].startswith("avel-dgl: warning:") and "bad.mp4" in lines[0]
    assert not out.exists()
    r = invoke(["localize", clip, "--out", tmp_path / "e.txt", *base])
    assert r.exit_code != 0 and "--out: expected a file name ending in .json or .csv" in r.stderr
    r = invoke(["localize", clip, "--out", out, "--html", tmp_path / "t.png", *base])
    assert r.exit_code != 0 and "--html: expected a file name ending in .html" in r.stderr
    r = invoke(["localize", clip, tmp_path / "bad.mp4", "--out", out, *base])  # one bad video among good ones
    assert r.exit_code == 0, r.output
    assert "1 of 2 videos failed" in r.stderr and json.loads(out.read_text())["failed"] == [str(tmp_path / "bad.mp4")]


def test_localize_replaces_existing_outputs_only_with_overwrite(tmp_path, checkpoint, patched):
    """One rule for every command: an existing --out or --html file is refused, untouched,
    unless --overwrite; a run folder stands for its best.pt."""
    clip = _event_video(tmp_path / "clip.mkv", (3, 6))
    out, page = tmp_path / "e.json", tmp_path / "t.html"
    out.write_text("mine")
    base = ["--feature-cache", tmp_path / "cache", "--frames-per-segment", F, "--quiet"]
    r = invoke(["localize", clip, "--checkpoint", checkpoint, "--out", out, *base])
    assert r.exit_code != 0 and "--overwrite" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and out.read_text() == "mine"
    page.write_text("mine too")
    r = invoke(["localize", clip, "--checkpoint", checkpoint, "--out", tmp_path / "new.json", "--html", page, *base])
    assert r.exit_code != 0 and "--html" in r.stderr and page.read_text() == "mine too"
    assert not (tmp_path / "new.json").exists()
    r = invoke(["localize", clip, "--checkpoint", checkpoint.parent, "--out", out, "--html", page, "--overwrite", *base])
    assert r.exit_code != 0 and "not written by avel-dgl" in r.stderr and out.read_text() == "mine"  # a user's file
    out.unlink(), page.unlink()
    for _ in range(2):  # written, then replaced: the files are localize's own
        r = invoke(["localize", clip, "--checkpoint", checkpoint.parent, "--out", out, "--html", page, "--overwrite",
                    *base])
        assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["videos"][0]["path"] == str(clip) and "<html>" in page.read_text()
