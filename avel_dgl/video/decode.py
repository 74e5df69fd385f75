"""Decoding video files with PyAV: the video's length in 1-s segments, the frames shown at given
presentation times, and the audio track as mono 16 kHz, cut into one VGGish example per segment.

Frames. Two rules choose the F frames of each segment. The AVE release's (the default): with N
the video's frame count and T its segment count, interval = floor(N / T) and segment l takes
frame number floor(l * interval + i * interval / F), i = 0..F-1 (the release's feature scripts,
F = 16; docs/VIDEO.md). N is the count the release's reader gave (imageio 2.x's ffmpeg plugin,
`len(reader)`): the duration times the frame rate, both as ffmpeg prints them (0.01 s, 0.01
frames per second), rounded; a video without a frame rate counts its packets instead.
The presentation-time rule: the frame on screen at t = l + i / F (the last frame whose
timestamp is <= t), times relative to the container's start compared as exact fractions
(pts * time_base), so a variable frame rate cannot shift a frame into the wrong segment. At
25, 30, 24 or 15 frames per second the two rules pick the same frames; at 29.97 with N = 299
(a 9.98-s container) the release's interval is 29 frames, so its segment 9 starts at frame 261
(8.71 s).

Segments. T = the duration in seconds rounded half up: a final partial second counts as a
segment when it holds at least half a second of media (AVE's 10-s clips that a container
reports as 9.98 s still give T = 10; a 3.5-s clip gives 4), and its frames are spread over the
part that exists. A file shorter than half a second has no segment and fails.

Audio. Downmixed to mono as the VGGish reference code does (the mean of the channels) and
resampled to 16 kHz once, by FFmpeg's resampler, channel by channel (release_examples: the
release's per-second resampy path, for scripts/resampling_study.py). Segment t's example is the
0.975 s from t (15,600 samples: 96 frames of 25 ms every 10 ms, VGGish's 0.96-s example plus its
last window's tail), so it lies inside [t, t + 1); audio missing at the end is silence.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from avel_dgl.errors import AvelError

SAMPLE_RATE = 16000
EXAMPLE_SAMPLES = 15600  # 0.975 s: the 96 log-mel frames (25-ms window, 10-ms hop) of one VGGish example
MIN_LAST_SECOND = 0.5  # a final partial second counts as a segment from this much media on


class DecodeError(AvelError):
    """A video file that cannot be read (unreadable, no video stream, no whole segment)."""


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds
    segments: int  # T
    frame_rate: float  # the video stream's average rate, frames per second (0 when unknown)
    has_audio: bool


def segment_count(duration: float) -> int:
    """T for a video of `duration` seconds (see the module docstring for the rule)."""
    return int(math.floor(duration + 1 - MIN_LAST_SECOND + 1e-9))


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise DecodeError(f"{path}: expected a video file, found one FFmpeg cannot read ({reason})") from None


def _start(container) -> Fraction:
    """The container's start time: stream timestamps are measured from it."""
    return Fraction(container.start_time or 0, av.time_base)


def probe(path: str | Path) -> MediaInfo:
    """Duration, segment count, frame rate and audio presence, from the container's headers."""
    path = Path(path)
    with _open(path) as c:
        if not c.streams.video:
            raise DecodeError(f"{path}: expected a video stream, found none")
        video = c.streams.video[0]
        duration = c.duration / av.time_base if c.duration else 0.0
        if not duration and video.duration:
            duration = float(video.duration * video.time_base)
        rate = float(video.average_rate) if video.average_rate else 0.0
        info = MediaInfo(str(path), duration, segment_count(duration), rate, bool(c.streams.audio))
    if info.segments < 1:
        raise DecodeError(f"{path}: expected at least {MIN_LAST_SECOND} s of video, found {duration:.2f} s")
    return info


def sample_times(info: MediaInfo, per_segment: int) -> list[Fraction]:
    """The presentation-time rule: the times of the frames sampled in each segment, in order,
    `per_segment` evenly spaced from the start of each second (t + i / F); a partial last second
    spreads them over its part."""
    times = []
    for t in range(info.segments):
        length = min(Fraction(1), Fraction(info.duration).limit_denominator(10**6) - t)
        times += [t + length * Fraction(i, per_segment) for i in range(per_segment)]
    return times


def release_frame_indices(frames: int, segments: int, per_segment: int) -> list[int]:
    """The AVE release's rule: the numbers of the frames sampled in each segment, in order, for a
    video of `frames` frames and `segments` segments: floor(l * interval + i * interval / F) with
    interval = floor(frames / segments), computed exactly (the release's F = 16 is exact in floats
    too, so its 160 indices of a 10-s clip are these)."""
    interval = frames // segments
    return [(l * interval * per_segment + i * interval) // per_segment
            for l in range(segments) for i in range(per_segment)]


def release_frame_count(info: MediaInfo) -> int:
    """N as the AVE release's reader reckoned it, from the headers: imageio 2.x's ffmpeg plugin
    read "Duration: HH:MM:SS.cc" and "R fps" from ffmpeg's banner and took round(duration * R).
    ffmpeg prints the container's duration rounded half up to centiseconds and the stream's
    average frame rate with two decimals (29.97 for 30000/1001). 0 without a frame rate."""
    if not info.frame_rate:
        return 0
    centiseconds = (round(info.duration * 1_000_000) + 5000) // 10000
    printed_rate = float(f"{info.frame_rate:.2f}")
    return math.floor(centiseconds / 100 * printed_rate + 0.5)  # Python 2's round, half away from zero


def frame_count(path: str | Path) -> int:
    """N, the number of frames the video stream decodes to, counted from its packets (one frame
    each for the codecs of video files) without decoding; packets the container marks to be
    discarded (edit lists) decode to no frame and are not counted."""
    path = Path(path)
    with _open(path) as c:
        try:
            return sum(1 for packet in c.demux(c.streams.video[0]) if packet.size and not packet.is_discard)
        except (av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: reading the video stream failed ({e})") from None


def sampled_frames(path: str | Path, times: list[Fraction] | None = None,
                   indices: list[int] | None = None) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8, given either `times` (sorted presentation times: the frame on
    screen at each) or `indices` (sorted frame numbers, counted from 0 in presentation order).
    Frames are decoded in a stream and only the sampled ones converted, so memory holds one
    frame whatever the video's length. Times before the first frame get the first frame; times
    after the last frame, and numbers past it, the last one."""
    if (times is None) == (indices is None):
        raise ValueError("sampled_frames: give times or indices")
    path = Path(path)
    targets = times if indices is None else indices
    k, previous, number = 0, None, 0
    with _open(path) as c:
        stream = c.streams.video[0]  # single-threaded decoding: a small share of the time (docs/BENCHMARKS.md)
        start = _start(c)
        try:
            for frame in c.decode(stream):
                if frame.pts is None and indices is None:
                    continue
                # Where this frame begins on the targets' scale; the previous frame covers what is before.
                begins = number if indices is not None else frame.pts * frame.time_base - start
                number += 1
                while k < len(targets) and targets[k] < begins:
                    yield (frame if previous is None else previous).to_ndarray(format="rgb24")
                    k += 1
                if k == len(targets):
                    return
                previous = frame
        except (av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: video decoding failed after {k} sampled frames ({e})") from None
    if previous is None:
        raise DecodeError(f"{path}: expected video frames, found none")
    rgb = previous.to_ndarray(format="rgb24")
    for _ in range(k, len(targets)):
        yield rgb


def _audio_frames(path: Path, format: str, rate: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """The audio track as (sample rate, (channels, n) array) chunks in FFmpeg sample `format`
    (planar), resampled by FFmpeg to `rate` (None: the track's own rate), from the container's
    start: a track that starts later is preceded by silence."""
    with _open(path) as c:
        stream = c.streams.audio[0]
        start = _start(c)
        resampler = None
        try:
            for frame in c.decode(stream):
                if resampler is None:
                    out_rate = rate or frame.sample_rate
                    resampler = av.AudioResampler(format=format, layout=frame.layout, rate=out_rate)
                    begin = 0 if frame.pts is None else frame.pts * frame.time_base - start
                    if begin > 0:
                        yield out_rate, np.zeros((len(frame.layout.channels), int(round(begin * out_rate))),
                                                 np.float32)
                for out in resampler.resample(frame):
                    yield out_rate, out.to_ndarray()
            if resampler is not None:
                for out in resampler.resample(None):
                    yield out_rate, out.to_ndarray()
        except (av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: audio decoding failed ({e})") from None


def mono_16k(path: str | Path) -> Iterator[np.ndarray]:
    """The audio track as consecutive float32 chunks of mono 16 kHz samples from the container's
    start (silence first when the track starts later). Each channel is resampled once, by
    FFmpeg's resampler, then the channels are averaged."""
    for _, chunk in _audio_frames(Path(path), "fltp", SAMPLE_RATE):
        yield chunk.mean(axis=0, dtype=np.float32)


def release_examples(path: str | Path, segments: int, resampy_filter: str = "kaiser_best") -> Iterator[np.ndarray]:
    """The AVE release's audio path: one (EXAMPLE_SAMPLES,) float32 16 kHz waveform per segment.
    The track as 16-bit samples at its own rate (the .wav the release made with ffmpeg), scaled
    by 1/32768, channels averaged, cut into whole seconds [t, t + 1), each second resampled to
    16 kHz on its own by resampy's kaiser_best filter (`resampy_filter`: another one, for
    scripts/resampling_study.py); the example is its first 0.975 s."""
    try:
        import resampy
    except ImportError:
        raise AvelError("--audio-resampling per-second-resampy: needs the resampy package "
                        "(pip install resampy)") from None
    path = Path(path)
    chunks = _audio_frames(path, "s16p", None)
    first = next(chunks, None)
    if first is None:
        yield from (np.zeros(EXAMPLE_SAMPLES, np.float32) for _ in range(segments))
        return
    rate = first[0]
    mono = (c.astype(np.float64).mean(axis=0) / 32768.0 for _, c in itertools.chain([first], chunks))
    for second in segment_audio(mono, segments, rate, rate):
        wave = resampy.resample(second, rate, SAMPLE_RATE, filter=resampy_filter) if rate != SAMPLE_RATE \
            else second
        wave = wave[:EXAMPLE_SAMPLES]
        yield np.pad(wave, (0, EXAMPLE_SAMPLES - len(wave))).astype(np.float32)


def segment_audio(chunks: Iterator[np.ndarray], segments: int, rate: int = SAMPLE_RATE,
                  length: int = EXAMPLE_SAMPLES) -> Iterator[np.ndarray]:
    """Cut a mono stream of `rate` samples a second into one (length,) waveform per segment:
    segment t's starts at t seconds; missing samples are zeros. Keeps at most about a second of
    audio. By default, 16 kHz cut into VGGish examples."""
    buffer, offset = np.zeros(0, np.float32), 0  # buffer[0] is sample number `offset`
    chunks = iter(chunks)
    for t in range(segments):
        begin = t * rate
        end = begin + length
        while offset + len(buffer) < end:
            chunk = next(chunks, None)
            if chunk is None:
                break
            buffer = np.concatenate([buffer, chunk])
        piece = buffer[begin - offset:end - offset]
        yield np.pad(piece, (0, length - len(piece)))
        drop = min(len(buffer), (t + 1) * rate - offset)
        buffer, offset = buffer[drop:], offset + drop
