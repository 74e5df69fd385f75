"""Videos in: decoding by presentation time, audio downmix and resampling, the VGGish frontend
against the published parameters, our VGGish against torchaudio 2.2.1's port (network and input
processing), the visual path against torchvision's VGG19, the weight files (Keras loader, lookup,
unusable files, cache key), segment locality, and `extract` end to end.

No downloads: networks are built with random weights through load_networks(weights="random");
end-to-end tests swap VGG19 for a small stand-in with the same input (224x224 Caffe-preprocessed
frames) and output ((7, 7, 512) per frame), so the recipe around it runs in seconds."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch

from avel_dgl.errors import AvelError
from avel_dgl.video import decode, extract, vgg19, vggish, weights
from helpers import invoke
from video_files import SmallVisual, frame_image, make_video, tone

TONE = 1000.0


@pytest.fixture(scope="module")
def audio_net():
    torch.manual_seed(0)
    return vggish.AudioNet()


@pytest.fixture(scope="module")
def small_nets(audio_net):
    return extract.Networks(audio_net, SmallVisual())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {
        "main": make_video(d / "main.mkv"),
        "stereo44": make_video(d / "stereo44.mp4", audio_rate=44100, channels=2, lossy=True),
        "vfr": make_video(d / "vfr.mkv", frame_times=np.concatenate([np.arange(0, 5, 1 / 25), np.arange(5, 10, 1 / 7)])),
        "noaudio": make_video(d / "noaudio.mkv", audio_rate=None),
        "short": make_video(d / "short.mkv", seconds=3.5),
    }
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    out["corrupt"], out["empty"] = d / "corrupt.mp4", d / "empty.mp4"
    return out


# ---- decoding ----------------------------------------------------------------------------------

def test_segment_counts(videos):
    assert [decode.probe(videos[k]).segments for k in ("main", "stereo44", "vfr", "noaudio", "short")] == \
        [10, 10, 10, 10, 4]
    assert decode.segment_count(9.98) == 10 and decode.segment_count(3.49) == 3 and decode.segment_count(0.4) == 0
    assert not decode.probe(videos["noaudio"]).has_audio and decode.probe(videos["main"]).has_audio
    for name in ("corrupt", "empty"):
        with pytest.raises(decode.DecodeError, match=name):
            decode.probe(videos[name])


def test_sixteen_frames_per_segment_at_their_presentation_times(tmp_path):
    """Each frame shows its own index (red = 10 * (i % 25), green = 10 * (i // 25)); with a
    variable frame rate, the frame sampled at t must be the last one shown at or before t."""
    times = np.concatenate([np.arange(0, 5, 1 / 25), np.arange(5, 10, 1 / 7)])

    def picture(t):
        i = int(np.argmin(np.abs(times - t)))
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0], img[..., 1] = 10 * (i % 25), 10 * (i // 25)
        return img

    path = make_video(tmp_path / "vfr.mkv", frame_times=times, picture=picture, audio_rate=None)
    info = decode.probe(path)
    sample = decode.sample_times(info, 16)
    assert len(sample) == 160 and sample[16 * 7 + 3] == 7 + Fraction(3, 16)
    # Whole seconds: t + i / 16 (the container may report the last frame's start as the end,
    # making the last second partial; its frames are then spread over what exists).
    assert sample[:144] == [t + Fraction(i, 16) for t in range(9) for i in range(16)]
    frames = list(decode.sampled_frames(path, sample))
    assert len(frames) == 160
    with av.open(str(path)) as c:  # the timestamps as stored
        stored = [f.pts * f.time_base for f in c.decode(video=0)]
    assert len(set(np.diff(stored))) > 2  # variable frame rate indeed
    shown = [max(i for i, ts in enumerate(stored) if ts <= s) for s in sample]
    decoded = [int(round(f[..., 0].mean() / 10)) + 25 * int(round(f[..., 1].mean() / 10)) for f in frames]
    assert decoded == shown


def _numbered_video(path: Path, times: np.ndarray, lossy: bool = False, rate=25, audio_seconds=None) -> Path:
    """A video whose frame i shows its number (red = 10 * (i % 25), green = 10 * (i // 25)), with
    `audio_seconds` of audio (None: no audio track)."""
    def picture(t):
        i = int(np.argmin(np.abs(times - t)))
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0], img[..., 1] = 10 * (i % 25), 10 * (i // 25)
        return img
    return make_video(path, seconds=audio_seconds or 1, fps=rate, frame_times=times, picture=picture,
                      audio_rate=16000 if audio_seconds else None, lossy=lossy)


class FrameRecorder(SmallVisual):
    """SmallVisual that notes the number (_numbered_video) of every frame it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def preprocess(self, frames):
        self.seen += [int(round(f[..., 0].mean() / 10)) + 25 * int(round(f[..., 1].mean() / 10)) for f in frames]
        return super().preprocess(frames)


def _frames_seen(path: Path, audio_net, **settings) -> list[int]:
    nets = extract.Networks(audio_net, FrameRecorder())
    extract.extract_video(path, nets, extract.Settings(**settings))
    return nets.visual.seen


def _release_indices(n_frames: int, segments: int = 10, per: int = 16) -> list[int]:
    """The AVE release's frame numbers, as its feature script computes them (in floats)."""
    interval = int(n_frames / segments)
    return [int(l * interval + (i * 1.0 / per) * interval) for l in range(segments) for i in range(per)]


def _on_screen(path: Path, times) -> list[int]:
    with av.open(str(path)) as c:  # the timestamps as stored
        stored = [f.pts * f.time_base for f in c.decode(video=0)]
    return [max(i for i, ts in enumerate(stored) if ts <= s) for s in times]


def test_release_frame_rule_equals_presentation_times_at_25_fps(tmp_path, audio_net):
    path = _numbered_video(tmp_path / "25.mkv", np.arange(250) / 25)
    assert decode.release_frame_count(decode.probe(path)) == decode.frame_count(path) == 250
    release = _frames_seen(path, audio_net)  # the default
    assert release == _release_indices(250) and release[16 * 9:16 * 9 + 3] == [225, 226, 228]
    assert _frames_seen(path, audio_net, frame_rule="presentation-time") == release


@pytest.mark.parametrize("lossy", [False, True], ids=["ffv1", "h264"])
def test_release_frame_rule_at_29_97_fps(tmp_path, audio_net, lossy):
    """299 frames at 29.97 fps, which ffmpeg reports as "Duration: 00:00:09.98" and "29.97 fps",
    so the release's reader counted round(9.98 * 29.97) = 299 frames: the default takes the
    release's frame numbers (interval 29, segment 9 from frame 261, 8.71 s); presentation-time
    the frames on screen at l + i / 16."""
    times = np.arange(299) * 1001 / 30000
    path = _numbered_video(tmp_path / ("2997.mp4" if lossy else "2997.mkv"), times, lossy, Fraction(30000, 1001))
    info = decode.probe(path)
    assert f"{info.frame_rate:.2f}" == "29.97" and 9.975 <= info.duration < 9.985
    assert decode.release_frame_count(info) == 299
    with av.open(str(path)) as c:
        assert decode.frame_count(path) == sum(1 for _ in c.decode(video=0)) == 299
    release = _frames_seen(path, audio_net)
    assert release == _release_indices(299) and release[16 * 9] == 261
    by_time = _frames_seen(path, audio_net, frame_rule="presentation-time")
    assert by_time == _on_screen(path, decode.sample_times(info, 16))
    assert by_time[16 * 9] == 269 and sum(a == b for a, b in zip(release, by_time)) < 40


def test_release_frame_rule_counts_frames_as_the_releases_reader(tmp_path, audio_net):
    """The same 299 frames with 10.03 s of audio: the container lasts 10.03 s, so the release's
    reader counted round(10.03 * 29.97) = 301 frames, interval 30 (not the 29 of the frames the
    stream decodes to), and its segment 9 starts at frame 270."""
    path = _numbered_video(tmp_path / "late_audio.mkv", np.arange(299) * 1001 / 30000, rate=Fraction(30000, 1001),
                           audio_seconds=10.03)
    assert decode.frame_count(path) == 299 and decode.release_frame_count(decode.probe(path)) == 301
    release = _frames_seen(path, audio_net)
    assert release == [min(i, 298) for i in _release_indices(301)] and release[16 * 9] == 270


def test_release_frame_count_is_the_readers_estimate():
    """imageio 2.x: round(duration * fps) with ffmpeg's printed duration (centiseconds, rounded
    half up) and printed rate (two decimals)."""
    def count(duration, rate):
        return decode.release_frame_count(decode.MediaInfo("v", duration, 10, rate, True))
    assert count(10.0, 25.0) == 250 and count(9.976313, 4784000 / 159621) == 299  # 9.98 s x 29.97
    assert count(10.03, 30000 / 1001) == 301  # 10.03 x 29.97 = 300.6: an audio track ending late counts too
    assert count(9.995, 100.0) == 1000 and count(9.9949, 100.0) == 999  # printed 10.00 s and 9.99 s
    assert count(10.0, 0.0) == 0  # no frame rate: extract counts the stream's packets instead


def test_release_frame_rule_with_other_frames_per_segment():
    assert decode.release_frame_indices(299, 10, 16) == _release_indices(299)
    assert decode.release_frame_indices(250, 10, 4) == [25 * l + 25 * i // 4 for l in range(10) for i in range(4)]
    assert decode.release_frame_indices(87, 4, 2) == [0, 10, 21, 31, 42, 52, 63, 73]  # 3.5 s at 25 fps
    with pytest.raises(AvelError, match="--frame-rule: expected one of release-index, presentation-time"):
        extract.Settings(frame_rule="time")


def test_partial_last_second_spreads_its_frames_over_the_part_that_exists(videos):
    info = decode.probe(videos["short"])
    sample = decode.sample_times(info, 4)
    assert 3.45 < info.duration < 3.55 and info.segments == 4
    part = Fraction(info.duration).limit_denominator(10**6) - 3
    assert sample[-4:] == [3 + part * i / 4 for i in range(4)]


def test_audio_is_downmixed_to_mono_and_resampled_to_16k(tmp_path):
    """Left a 1 kHz tone, right a 3 kHz tone, both amplitude 0.6, at 44.1 kHz: the 16 kHz mono
    track has both tones at amplitude 0.3 (the channels' mean) and 10 s of samples."""
    freq = {0: 1000.0, 1: 3000.0}
    path = make_video(tmp_path / "st.mkv", audio_rate=44100, channels=2,
                      sound=lambda t, ch: 0.6 * np.sin(2 * np.pi * freq[ch] * t))
    mono = np.concatenate(list(decode.mono_16k(path)))
    assert abs(len(mono) - 160000) <= 64
    x = mono[8000:8000 + 16000]  # one second away from the edges: 1-Hz bins
    spectrum = np.abs(np.fft.rfft(x)) * 2 / len(x)
    assert spectrum[1000] == pytest.approx(0.3, abs=0.01) and spectrum[3000] == pytest.approx(0.3, abs=0.01)
    assert np.delete(spectrum, [1000, 3000]).max() < 0.01


def test_segment_audio_cuts_one_example_per_second_and_pads_the_end():
    stream = np.arange(16000 * 3 + 5000, dtype=np.float32)
    chunks = [stream[i:i + 777] for i in range(0, len(stream), 777)]
    parts = list(decode.segment_audio(iter(chunks), 4))
    assert [p[0] for p in parts] == [0, 16000, 32000, 48000]
    assert all(len(p) == decode.EXAMPLE_SAMPLES for p in parts)
    assert parts[3][4999] == 48000 + 4999 and not parts[3][5000:].any()


# ---- the networks ------------------------------------------------------------------------------

def _reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """Log-mel frames from the published VGGish parameters (16 kHz; 25-ms periodic Hann windows
    every 10 ms, 512-point FFT magnitude; 64 HTK-mel bands 125-7500 Hz; log(x + 0.01))."""
    win, hop, n_fft = 400, 160, 512
    frames = np.stack([wave[i:i + win] for i in range(0, len(wave) - win + 1, hop)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    mag = np.abs(np.fft.rfft(frames * hann, n_fft))
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    bins = mel(np.linspace(0, 8000, n_fft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    weights = np.maximum(0, np.minimum((bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2]),
                                       (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])))
    weights[0] = 0
    return np.log(mag @ weights + 0.01)


def test_vggish_frontend_matches_the_published_parameters(audio_net):
    wave = (0.4 * np.sin(2 * np.pi * 440 * np.arange(decode.EXAMPLE_SAMPLES) / 16000)
            + 0.05 * np.random.default_rng(0).normal(size=decode.EXAMPLE_SAMPLES)).astype(np.float32)
    examples = audio_net.log_mel(wave[None])
    assert tuple(examples.shape) == (1, 1, 96, 64)  # one 0.96-s example of 96 frames x 64 bands
    reference = _reference_log_mel(wave.astype(np.float64))
    assert reference.shape == (96, 64)
    np.testing.assert_allclose(examples[0, 0].numpy(), reference, atol=2e-3)


def _torchaudio_vggish():
    """torchaudio's VGGish port (prototype in 2.2.1, deprecated in 2.8, removed in 2.9), or a skip."""
    try:
        from torchaudio.prototype.pipelines import VGGISH
    except Exception as e:  # not installed, or a version without the port
        pytest.skip(f"torchaudio's VGGish port is not importable here ({type(e).__name__}: {e}); our VGGish "
                    f"was checked against torchaudio 2.2.1's")
    return VGGISH


def test_our_vggish_computes_what_torchaudios_port_computes():
    """The same random weights through both networks (our state dict loads into theirs with
    the same keys: the `vggish.pt` layout), and both input processings on tones, noise and
    onsets: the same examples and embeddings, to float32 rounding."""
    bundle = _torchaudio_vggish()
    torch.manual_seed(3)
    ours = vggish.VGGish().eval()
    theirs = bundle.VGGish().eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    rng = np.random.default_rng(0)
    t = np.arange(decode.EXAMPLE_SAMPLES) / 16000
    waves = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * rng.normal(size=len(t)),
                      np.where(t > 0.5, 0.8 * np.sin(2 * np.pi * 3000 * t), 0.0), np.zeros(len(t)),
                      0.5 * np.sin(2 * np.pi * (200 + 3000 * t) * t)]).astype(np.float32)
    processor = bundle.get_input_processor()
    expected = torch.cat([processor(torch.from_numpy(w)) for w in waves])
    examples = vggish.log_mel_examples(torch.from_numpy(waves))
    assert examples.shape == expected.shape == (5, 1, 96, 64)
    np.testing.assert_allclose(examples.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
    # A longer waveform gives its whole examples in order, as the port's framing does.
    long = torch.from_numpy(np.concatenate(waves[:3]))
    np.testing.assert_allclose(vggish.log_mel_examples(long[None]).numpy(), processor(long).numpy(),
                               rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(ours(expected).numpy(), theirs(expected).numpy(), rtol=1e-5, atol=1e-6)
        assert ours(expected).std() > 0


def test_audio_path_is_vggish_on_each_segments_waveform(videos, small_nets):
    part = extract.extract_video(videos["main"], small_nets, extract.Settings(frames_per_segment=1))
    t = np.arange(160000) / 16000
    wave = np.round(tone(t, (2, 7)) * 32767) / 32768  # the file's 16-bit samples, as FFmpeg reads them back
    for s in (0, 2, 5, 9):
        x = torch.from_numpy(wave[None, s * 16000:s * 16000 + 15600].astype(np.float32))
        with torch.no_grad():
            expected = small_nets.audio.model(vggish.log_mel_examples(x)).numpy()[0]
        np.testing.assert_allclose(part.audio[s], expected, rtol=1e-4, atol=1e-5)
    assert (part.audio >= 0).all() and part.audio[2:7].any()  # after the last ReLU


def test_visual_path_equals_torchvision_vgg19_features():
    from torchvision.models import vgg19 as torchvision_vgg19

    torch.manual_seed(1)
    net = vgg19.VisualNet("random")
    reference = torchvision_vgg19(init_weights=False).features.eval()  # weights copied below
    reference.load_state_dict(net.features.state_dict())
    x = net.preprocess([frame_image(4.0)])  # one frame: the full network at 224x224 takes seconds
    assert tuple(x.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x).permute(0, 2, 3, 1).numpy()
    maps = net(x)
    assert maps.shape == (1, 7, 7, 512) and maps.std() > 0
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-5)


def test_caffe_preprocessing_is_bgr_minus_imagenet_means_in_0_255():
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[...] = (200, 100, 50)  # RGB
    x = vgg19.normalise(vgg19.resize_frames([frame]), "caffe")
    np.testing.assert_allclose(x[0, :, 100, 100].numpy(), [50 - 103.939, 100 - 116.779, 200 - 123.68], atol=1e-4)


def _thin_vgg19() -> torch.nn.Sequential:
    """VGG19's layer structure at 1/16 of the width, for a small weights file."""
    from torchvision.models import vgg

    return vgg.make_layers([c // 16 if c != "M" else c for c in vgg.cfgs["E"]])


def _write_keras_file(path: Path, features: torch.nn.Sequential, nested: bool, rng) -> dict:
    """A Keras HDF5 weights file: attrs layer_names; per layer a group with attrs weight_names
    (Keras 2: 'name/kernel:0' in a subgroup; Keras 1: 'name_W_1:0' beside it), kernel (3, 3, in, out)."""
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    kernels = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in ("input_1", *vgg19.KERAS_LAYERS)]
        f.attrs["backend"] = b"tensorflow"
        f.create_group("input_1").attrs["weight_names"] = []
        for name, conv in zip(vgg19.KERAS_LAYERS, convs):
            out_c, in_c = conv.weight.shape[:2]
            k = rng.normal(size=(3, 3, in_c, out_c)).astype(np.float32)
            b = rng.normal(size=out_c).astype(np.float32)
            g = f.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"] if nested else [f"{name}_W_1:0", f"{name}_b_1:0"]
            g.attrs["weight_names"] = [n.encode() for n in names]
            g[names[0]], g[names[1]] = k, b
            kernels[name] = (k, b)
    return kernels


@pytest.mark.parametrize("nested", [True, False], ids=["keras2", "keras1"])
def test_keras_vgg19_loader(tmp_path, nested):
    features = _thin_vgg19()
    kernels = _write_keras_file(tmp_path / "w.h5", features, nested, np.random.default_rng(0))
    vgg19.load_keras_vgg19(tmp_path / "w.h5", features)
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    for name, conv in zip(vgg19.KERAS_LAYERS, convs):
        k, b = kernels[name]
        np.testing.assert_array_equal(conv.weight.detach().numpy(), k.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(conv.bias.detach().numpy(), b)
    # The first convolution as Keras/TensorFlow computes it (cross-correlation, 'same' padding,
    # channels last) at one output pixel equals torch's.
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = convs[0](torch.from_numpy(x)).numpy()
    k, b = kernels["block1_conv1"]
    patch = x[0, :, 2:5, 4:7].transpose(1, 2, 0)  # rows 2-4, cols 4-6 around output (3, 5), (3, 3, in)
    np.testing.assert_allclose(y[0, :, 3, 5], np.einsum("ijc,ijco->o", patch, k) + b, rtol=1e-5, atol=1e-5)


def test_keras_loader_names_the_layer_that_does_not_fit(tmp_path):
    features = _thin_vgg19()
    _write_keras_file(tmp_path / "w.h5", features, True, np.random.default_rng(0))
    with h5py.File(tmp_path / "w.h5", "a") as f:
        del f["block3_conv2"]["block3_conv2"]["kernel:0"]
        f["block3_conv2"]["block3_conv2"]["kernel:0"] = np.zeros((3, 3, 5, 5), np.float32)
    with pytest.raises(AvelError, match=r"w\.h5: layer 'block3_conv2': expected a kernel \(3, 3, 16, 16\)"):
        vgg19.load_keras_vgg19(tmp_path / "w.h5", features)
    _write_keras_file(tmp_path / "w2.h5", features, True, np.random.default_rng(0))
    with h5py.File(tmp_path / "w2.h5", "a") as f:
        del f["block5_conv4"]
    with pytest.raises(AvelError, match=r"w2\.h5: expected Keras layer 'block5_conv4'"):
        vgg19.load_keras_vgg19(tmp_path / "w2.h5", features)


def _offline(monkeypatch, tmp_path) -> None:
    """torch's hub cache and Keras's cache in tmp_path; every download fails."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def test_every_missing_weight_file_is_named_in_one_message(tmp_path, monkeypatch, videos):
    files = [weights.VGGISH, weights.VGG19_KERAS]
    with pytest.raises(AvelError) as e:
        weights.locate(files, tmp_path)
    message = str(e.value)
    assert message.startswith(f"--weights-dir: {tmp_path} lacks") and "\n" not in message
    assert all(w.name in message and w.url in message for w in files)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels.h5 (from https://" in message  # the with-top file serves too
    _offline(monkeypatch, tmp_path)
    with pytest.raises(AvelError) as e:
        weights.locate(files)
    message = str(e.value)
    assert "\n" not in message and all(w.name in message and w.url in message for w in files)
    assert str(tmp_path / "hub" / "torchaudio" / "models") in message and str(tmp_path / "hub" / "checkpoints") in message
    assert str(tmp_path / "keras" / "models") in message and "--weights-dir" in message
    # The command: one line, and nothing left behind (no OUT, no .avel_extract, no cache folder).
    r = invoke(["extract", videos["main"], "--out", tmp_path / "ex", "--quiet"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert all(w.name in r.stderr for w in files) and not (tmp_path / "ex").exists()
    (tmp_path / "ex2").mkdir()
    r = invoke(["extract", videos["main"], "--out", tmp_path / "ex2", "--weights-dir", tmp_path / "hub", "--quiet"])
    assert r.exit_code == 2 and "lacks vggish.pt" in r.stderr and not any((tmp_path / "ex2").iterdir())


def test_keras_file_with_the_classifier_is_found_in_keras_cache_and_loads(tmp_path, monkeypatch):
    """The AVE release loaded the with-top file: found where Keras keeps it, its convolutions
    loaded, its classifier layers ignored."""
    _offline(monkeypatch, tmp_path)
    folder = tmp_path / "keras" / "models"
    folder.mkdir(parents=True)
    path = folder / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    features = _thin_vgg19()
    kernels = _write_keras_file(path, features, True, np.random.default_rng(0))
    with h5py.File(path, "a") as f:
        for name, shape in (("fc1", (25088 // 256, 8)), ("predictions", (8, 10))):
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g[f"{name}/kernel:0"], g[f"{name}/bias:0"] = np.ones(shape, np.float32), np.ones(shape[1], np.float32)
    assert weights.weight_path(weights.VGG19_KERAS) == path
    vgg19.load_keras_vgg19(path, features)
    last = [m for m in features if isinstance(m, torch.nn.Conv2d)][-1]
    np.testing.assert_array_equal(last.bias.detach().numpy(), kernels["block5_conv4"][1])


def _state_file(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def test_unusable_weight_files_are_one_line_saying_what_they_are_and_what_to_do(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    features = vgg19.vgg19_features()
    hub = weights.hub_folder(weights.VGG19_TORCHVISION)
    hub.mkdir(parents=True)
    good = {f"features.{k}": v for k, v in features.state_dict().items()}
    whole = _state_file(tmp_path / "whole.pth", good).read_bytes()
    truncated = hub / weights.VGG19_TORCHVISION.name
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(AvelError) as e:
        vgg19.VisualNet("torchvision", truncated)
    assert str(e.value) == (f"{truncated}: expected the torchvision VGG19 weights (a torch state dict), found a "
                            f"truncated file (its zip archive has no end: an interrupted download?); delete it and "
                            f"rerun to download it again")
    other = _state_file(tmp_path / "vgg19-dcbb9e9d.pth", {"classifier.0.weight": torch.zeros(2, 2)})
    with pytest.raises(AvelError, match=r"vgg19-dcbb9e9d.pth: expected the torchvision VGG19 weights .*found no "
                                        r"tensor 'features.0.weight' \(its 1 tensors start with 'classifier.0.weight'"
                                        r": another network's weights\?\); replace it with a fresh download of "
                                        r"https://download.pytorch.org/models/vgg19-dcbb9e9d.pth$"):
        vgg19.VisualNet("torchvision", other)
    shaped = _state_file(tmp_path / "x.pth", {**good, "features.0.bias": torch.zeros(3)})
    with pytest.raises(AvelError, match=r"found tensor 'features.0.bias' of shape \(3,\), expected \(64,\)"):
        vgg19.VisualNet("torchvision", shaped)
    # A web page saved under VGGish's name, in --weights-dir (which never downloads): the command says so.
    given = tmp_path / "given"
    given.mkdir()
    (given / "vggish.pt").write_text("<!DOCTYPE html>\n<html><body>Access denied</body></html>\n")
    (given / weights.VGG19_KERAS.name).write_bytes(b"unused here")
    r = invoke(["extract", _vggish_clip(tmp_path), "--out", tmp_path / "ex", "--weights-dir", given, "--quiet"])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"avel-dgl: error: {given / 'vggish.pt'}: expected the VGGish weights (a torch state dict), found a web page "
        f"(HTML), not a weights file: the download saved a page instead of the file; replace it with a fresh "
        f"download of {weights.VGGISH.url}"]
    assert not (tmp_path / "ex" / extract.PARTS_DIR).exists()
    (given / weights.VGG19_KERAS.name).write_text("<html>a page</html>")
    with pytest.raises(AvelError, match=r"expected Keras VGG19 weights \(HDF5\), found a web page .*replace it with"):
        vgg19.VisualNet("keras", given / weights.VGG19_KERAS.name)


def _vggish_clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mkv", seconds=1.0)


# ---- the recipe --------------------------------------------------------------------------------

def test_segment_features_depend_only_on_their_second(tmp_path, small_nets):
    """Two videos that differ only in [5, 6) (another colour, another tone): only segment 5's
    audio and visual features differ."""
    a = make_video(tmp_path / "a.mkv", square=(0, 10), tone_span=(0, 10))
    b = make_video(tmp_path / "b.mkv", picture=lambda t: frame_image(t, (0, 10), (30, 30, 220) if 5 <= t < 6
                                                                      else (220, 30, 30)),
                   sound=lambda t, ch: np.where((t >= 5) & (t < 6), 0.5 * np.sin(2 * np.pi * 3000 * t),
                                                0.5 * np.sin(2 * np.pi * TONE * t)))
    settings = extract.Settings(frames_per_segment=4)
    pa, pb = (extract.extract_video(p, small_nets, settings) for p in (a, b))
    for name in ("audio", "visual"):
        x, y = getattr(pa, name), getattr(pb, name)
        same = [bool(np.array_equal(x[t], y[t])) for t in range(10)]
        assert same == [t != 5 for t in range(10)], name


def test_visual_feature_is_the_mean_over_the_segments_frames(videos, small_nets):
    settings = extract.Settings(frames_per_segment=4, batch_size=3)  # batches cross segment borders
    part = extract.extract_video(videos["main"], small_nets, settings)
    info = decode.probe(videos["main"])
    frames = list(decode.sampled_frames(videos["main"], decode.sample_times(info, 4)))
    maps = small_nets.visual(small_nets.visual.preprocess(frames))
    np.testing.assert_allclose(part.visual, maps.reshape(10, 4, 7, 7, 512).mean(1), rtol=1e-5, atol=1e-6)


def test_pooled_features_are_the_pooled_maps(videos, small_nets):
    from avel_dgl.data.cache import pool_maps

    maps = extract.extract_video(videos["short"], small_nets, extract.Settings(frames_per_segment=2))
    pooled = extract.extract_video(videos["short"], small_nets, extract.Settings(frames_per_segment=2, pooled=True))
    assert pooled.visual.shape == (4, 512)
    np.testing.assert_allclose(pooled.visual, pool_maps(maps.visual), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pooled.audio, maps.audio)


@pytest.fixture
def patched_networks(monkeypatch, small_nets):
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        return small_nets
    monkeypatch.setattr(extract, "load_networks", fake)
    monkeypatch.setattr(extract, "weights_identity", lambda *args, **kwargs: "test weights")
    return calls


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_extract_command_writes_ave_format_files_and_resumes(tmp_path, videos, patched_networks, tiny_run):
    from avel_dgl.data.ave import SPECS, open_dataset

    folder = Path(videos["main"]).parent
    out = tmp_path / "features"
    result = invoke(["extract", folder, "--out", out, "--frames-per-segment", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    warning_lines = [l for l in result.stderr.splitlines() if l.startswith("avel-dgl: warning:")]
    assert len(warning_lines) == 4  # corrupt, empty, no audio: one line each; and the lengths
    assert len(result.stderr.strip().splitlines()) == 4  # no raw FFmpeg lines either
    assert any("corrupt.mp4" in l and "failed" in l for l in warning_lines)
    assert warning_lines[-1] == ("avel-dgl: warning: videos of 4 to 10 segments: the shorter ones are zero-padded "
                                 "to T = 10 (videos.csv gives each video's own length); predict, evaluate and train "
                                 "read 10-segment videos, where padded segments mean nothing: extract clips of one "
                                 "length together, or run localize, which takes each video at its own length")
    assert any("noaudio.mkv" in l and "no audio" in l for l in warning_lines)
    rows = {Path(r["path"]).name: r for r in _read_csv(out / "videos.csv")}
    assert rows["corrupt.mp4"]["status"] == "failed" and rows["corrupt.mp4"]["row"] == ""
    assert rows["noaudio.mkv"]["status"] == "no_audio" and rows["short.mkv"]["segments"] == "4"
    assert rows["main.mkv"]["status"] == "ok" and float(rows["main.mkv"]["duration"]) == 10.0
    with open_dataset(out / "audio_feature.h5", SPECS["audio_feature.h5"]) as a, \
            open_dataset(out / "visual_feature.h5", SPECS["visual_feature.h5"]) as v:
        assert a.shape == (5, 10, 128) and v.shape == (5, 10, 7, 7, 512) and v.dtype == np.float32
        assert not a[int(rows["noaudio.mkv"]["row"])].any()
        short = int(rows["short.mkv"]["row"])
        assert v[short, :4].any() and not v[short, 4:].any()  # zero-padded after its 4 segments
        before = v[:]
    # The rest of avel-dgl reads them.
    pred = invoke(["predict", "--checkpoint", tiny_run / "best.pt", "--audio", out / "audio_feature.h5",
                   "--visual", out / "visual_feature.h5", "--out", tmp_path / "p.json"])
    assert pred.exit_code == 0, pred.output
    # A rerun skips every video: the networks are not even built, the files are the same.
    n_calls = len(patched_networks)
    again = invoke(["extract", folder, "--out", out, "--frames-per-segment", "2", "--quiet"])
    assert again.exit_code == 0, again.output
    assert len(patched_networks) == n_calls
    with h5py.File(out / "visual_feature.h5") as f:
        np.testing.assert_array_equal(f["avadataset"][:], before)


def test_extract_pooled_and_strict(tmp_path, videos, patched_networks):
    out = tmp_path / "pooled"
    result = invoke(["extract", videos["main"], videos["short"], "--out", out, "--pooled",
                     "--frames-per-segment", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    with h5py.File(out / "visual_feature.h5") as f:
        assert f["avadataset"].shape == (2, 10, 512)
    strict = tmp_path / "strict"
    result = invoke(["extract", videos["main"], videos["corrupt"], "--out", strict, "--strict",
                     "--frames-per-segment", "1", "--quiet"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("avel-dgl: error:") and "corrupt.mp4" in lines[-1]
    assert not (strict / "audio_feature.h5").exists()  # nothing half-written...
    assert len(list((strict / extract.PARTS_DIR).glob("*.npz"))) == 1  # ...and the finished video is kept


def test_extract_refuses_a_folder_with_the_users_files(tmp_path, videos, patched_networks):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "audio_feature.h5").write_bytes(b"user data")
    result = invoke(["extract", videos["main"], "--out", out, "--quiet"])
    assert result.exit_code != 0 and f"--out: {out} is not empty and holds no avel-dgl extract folder" in result.stderr
    assert (out / "audio_feature.h5").read_bytes() == b"user data"
    missing = invoke(["extract", tmp_path / "nope.mp4", "--out", tmp_path / "o2", "--quiet"])
    assert missing.exit_code != 0 and "nope.mp4: no such file or folder" in missing.stderr
