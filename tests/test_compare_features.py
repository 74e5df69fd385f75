"""`avel-dgl compare-features` on built pairs: an extract folder of generated clips against a
"release" folder built from its own features, one video per case: identical, audio from another
video, visual shifted by one segment, audio resampled by another resampler (the release's
per-second path with a polyphase resampler standing in for resampy). Each must be reported as
such. Bad input: one line, non-zero exit.

The networks are stand-ins (video_files.SmallVisual; an audio net that is a random linear map of
the VGGish log-mel examples): VGGish with random weights maps every clip to nearly the same
embedding (cosine 0.99 between a tone and noise), which would hide the differences the command
must find; with the published weights clips differ as they do here."""

from __future__ import annotations

import json
import sys
import types

import h5py
import numpy as np
import pytest
import torch

from avel_dgl.video import decode, extract, vggish
from avel_dgl.video.compare import compare_features
from helpers import SHARED_AVE, invoke
from video_files import SmallVisual, frame_image, make_video

IDS = ["RUhOCu3LNXM", "MH3m4AwEcRY", "2An2JMGMbbs", "aBcDeFgHiJk"]  # identical, audio swapped, shifted, resampled


class _FromSilence(torch.nn.Module):
    def forward(self, x):
        return x - np.log(0.01)  # log-mel of silence is log(0.01): make it 0, so silence is not a shared offset


class SmallAudio(vggish.AudioNet):
    """VGGish's log-mel examples -> a random linear map -> ReLU (128 values, about half zero)."""

    def __init__(self):
        super().__init__(None)
        torch.manual_seed(0)
        linear = torch.nn.Linear(96 * 64, 128)
        torch.nn.init.normal_(linear.weight, std=0.01)
        torch.nn.init.zeros_(linear.bias)
        self.model = torch.nn.Sequential(torch.nn.Flatten(), _FromSilence(), linear, torch.nn.ReLU()).eval()


def _changing(t, ch, video=0):
    """A tone whose pitch changes every second (so a shift by one segment shows), within 5.1 kHz."""
    return 0.4 * np.sin(2 * np.pi * (300 + 100 * video + 500 * np.floor(t)) * t)


def _picture(t):
    s = int(t)
    return frame_image(t, (0, 10), ((40 * s) % 256, 255 - 20 * s, (90 * s) % 256))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """OURS (an extract folder of four clips named by YouTube id) and RELEASE (their features,
    altered per case, plus two other rows), with Annotations.txt."""
    d = tmp_path_factory.mktemp("compare")
    clips = d / "clips"
    clips.mkdir()
    for i, video_id in enumerate(IDS):
        make_video(clips / f"{video_id}.mkv", picture=_picture, audio_rate=44100, channels=2,
                   sound=lambda t, ch, i=i: _changing(t, ch, i))
    donor = make_video(d / "donor.mkv", sound=lambda t, ch: 0.3 * np.random.default_rng(ch).standard_normal(t.shape))
    nets = extract.Networks(SmallAudio(), SmallVisual())
    settings = extract.Settings(frames_per_segment=1)
    ours = d / "ours"
    entries = extract.extract_parts([clips / f"{v}.mkv" for v in IDS], ours / extract.PARTS_DIR, settings,
                                    lambda: nets, progress=False, weights_id="random")
    extract.write_ave_folder(ours, entries, pooled=False)
    with h5py.File(ours / "audio_feature.h5") as a, h5py.File(ours / "visual_feature.h5") as v:
        audio, visual = a["avadataset"][()].astype(np.float64), v["avadataset"][()].astype(np.float64)
    audio[1] = extract.extract_video(donor, nets, settings).audio  # another video's audio
    visual[2] = np.concatenate([visual[2, 1:], visual[2, -1:]])  # release[t] = ours[t + 1]
    fake_resampy = types.SimpleNamespace(resample=lambda x, rate, to, filter: _polyphase(x, rate, to))
    sys.modules["resampy"] = fake_resampy
    try:
        waves = np.stack(list(decode.release_examples(clips / f"{IDS[3]}.mkv", 10)))
    finally:
        del sys.modules["resampy"]
    audio[3] = nets.audio(nets.audio.log_mel(waves))
    release = d / "release"
    release.mkdir()
    other = np.random.default_rng(0)
    rows = [1, 3, 4, 5]  # rows 0 and 2 are other videos
    full_audio, full_visual = other.random((6, 10, 128)), other.random((6, 10, 7, 7, 512))
    full_audio[rows], full_visual[rows] = audio, visual
    for name, x in (("audio_feature.h5", full_audio), ("visual_feature.h5", full_visual)):
        with h5py.File(release / name, "w") as f:
            f["avadataset"] = x
    names = ["Zzzzzzzzzzz", IDS[0], "Yyyyyyyyyyy", IDS[1], IDS[2], IDS[3]]
    (release / "Annotations.txt").write_text("".join(f"Church bell&{n}&good&0&10\n" for n in names))
    return ours, release


def _polyphase(x, rate, to):
    from scipy.signal import resample_poly

    return resample_poly(x, to, rate)


def test_each_built_pair_is_reported_as_such(built):
    ours, release = built
    report = compare_features(ours, release)
    got = {v["video_id"]: (v["audio"]["verdict"], v["visual"]["verdict"], v["visual"]["shift"], v["release_row"])
           for v in report["videos"]}
    assert got == {IDS[0]: ("identical", "identical", 0, 1), IDS[1]: ("different", "identical", 0, 3),
                   IDS[2]: ("identical", "shifted", -1, 4), IDS[3]: ("close", "identical", 0, 5)}
    resampled = report["videos"][3]["audio"]
    assert min(resampled["cosine"]) > 0.99 and max(resampled["max_diff"]) > 1e-3  # close, not identical
    assert report["summary"]["audio"]["verdicts"] == {"identical": 2, "close": 1, "different": 1}
    assert report["verdict"].startswith("MISMATCH") and "audio a different feature space" in report["verdict"] \
        and "visual shifted in time in 1 of 4 videos" in report["verdict"]
    # The audio zero fraction, ours and the release's, per video (where they differ: the swapped audio).
    with h5py.File(ours / "audio_feature.h5") as f, h5py.File(release / "audio_feature.h5") as g:
        zeros, release_zeros = (f["avadataset"][1] == 0).mean(), (g["avadataset"][3] == 0).mean()
    assert zeros != release_zeros and 0.2 < zeros < 0.8
    assert report["videos"][1]["audio_zero_fraction"] == pytest.approx(zeros)
    assert report["videos"][1]["release_audio_zero_fraction"] == pytest.approx(release_zeros)
    # The command: text by default, the same report with --json.
    result = invoke(["compare-features", ours, release])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == f"verdict: {report['verdict']}"
    assert any(l.strip().startswith("visual shifted by -1 segment(s)") for l in lines)
    as_json = invoke(["compare-features", ours, release, "--json"])
    assert json.loads(as_json.stdout) == json.loads(json.dumps(report))


def test_matching_videos_only_and_an_ok_verdict(built, tmp_path):
    """A release folder holding only the identical video's row (audio only), an Annotations.txt
    given by path: the other videos are listed as not in the release; the verdict is OK."""
    ours, release = built
    only = tmp_path / "release"
    only.mkdir()
    with h5py.File(release / "audio_feature.h5") as f, h5py.File(only / "audio_feature.h5", "w") as g:
        g["avadataset"] = f["avadataset"][1:2]
    (tmp_path / "ann.txt").write_text(f"Church bell&{IDS[0]}&good&0&10\n")
    report = compare_features(ours, only, tmp_path / "ann.txt")
    assert [v["video_id"] for v in report["videos"]] == [IDS[0]] and report["videos"][0]["visual"] is None
    assert len(report["unmatched"]) == 3 and report["verdict"] == "OK: 1 videos match the release (audio identical)"


def test_bad_input_is_one_line(built, tmp_path):
    ours, release = built
    cases = {
        "not an extract folder": ([tmp_path, release], "expected a folder written by `avel-dgl extract`"),
        "no release files": ([ours, tmp_path], "expected audio_feature.h5 or visual_feature.h5"),
        "release is a file": ([ours, release / "Annotations.txt"], "expected the AVE release's folder"),
        "no annotations": ([ours, release, "--annotations", tmp_path / "none.txt"], "none.txt: file not found"),
    }
    (tmp_path / "ann.txt").write_text("Church bell&someoneelse1&good&0&10\n" * 6)
    cases["no match"] = ([ours, release, "--annotations", tmp_path / "ann.txt"], "found no match among 4")
    (tmp_path / "short.txt").write_text(f"Church bell&{IDS[0]}&good&0&10\n")
    cases["row count"] = ([ours, release, "--annotations", tmp_path / "short.txt"], "expected 1 rows (one per line")
    for case, (args, message) in cases.items():
        result = invoke(["compare-features", *args])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("avel-dgl: error:"), case
        assert message in lines[0], (case, lines[0])


@pytest.mark.skipif(not (SHARED_AVE / "audio_feature_noisy.h5").is_file(), reason="needs ../shared/ave")
def test_release_audio_is_post_relu():
    """The figures the zero-fraction check relies on, from the real release's noisy audio rows."""
    with h5py.File(SHARED_AVE / "audio_feature_noisy.h5") as f:
        x = f["avadataset"][()]
    assert x.shape == (178, 10, 128) and x.min() == 0
    assert round(float((x == 0).mean()), 2) == 0.65 and round(float(x.max()), 2) == 4.54
