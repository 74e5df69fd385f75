"""Decoding video files with PyAV: the video's length in 1-s segments, the frames shown at given
presentation times, and the audio track as mono 16 kHz, cut into one VGGish example per segment.

Times are presentation times relative to the container's start, compared as exact fractions
(pts * time_base), so a variable frame rate cannot shift a frame into the wrong segment: the
frame sampled at time t is the one on screen at t, the last frame whose timestamp is <= t.

Segments. T = the duration in seconds rounded half up: a final partial second counts as a
segment when it holds at least half a second of media (AVE's 10-s clips that a container
reports as 9.98 s still give T = 10; a 3.5-s clip gives 4), and its frames are spread over the
part that exists. A file shorter than half a second has no segment and fails.

Audio. Downmixed to mono as the VGGish reference code does (the mean of the channels) and
resampled to 16 kHz once, by FFmpeg's resampler, channel by channel. Segment t's example is the
0.975 s from t (15,600 samples: 96 frames of 25 ms every 10 ms, VGGish's 0.96-s example plus its
last window's tail), so it lies inside [t, t + 1); audio missing at the end is silence.
"""

from __future__ import annotations

import logging
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

# FFmpeg's own log lines ("moov atom not found") must not reach stderr beside our one warning line
# per video. PyAV takes them into Python's logging, where they go nowhere, and keeps the last
# error for its exception's text ("...; last error log: ... moov atom not found"), which the
# warning quotes.
av.logging.set_level(av.logging.ERROR)
logging.getLogger("libav").addHandler(logging.NullHandler())
logging.getLogger("libav").propagate = False


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
        log = getattr(e, "log", None)  # FFmpeg's last error line, kept by PyAV (see the logging set-up above)
        if log and log[2].strip():
            reason += f": {log[2].strip()}"
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
    """The presentation times of the frames sampled in each segment, in order: `per_segment`
    evenly spaced from the start of each second (t + i / F, as the AVE release's script picks
    frames i * interval / 16 into each second); a partial last second spreads them over its part."""
    times = []
    for t in range(info.segments):
        length = min(Fraction(1), Fraction(info.duration).limit_denominator(10**6) - t)
        times += [t + length * Fraction(i, per_segment) for i in range(per_segment)]
    return times


def sampled_frames(path: str | Path, times: list[Fraction]) -> Iterator[np.ndarray]:
    """For each time in `times` (sorted), the RGB frame (H, W, 3) uint8 on screen at that time.
    Frames are decoded in a stream and only the sampled ones converted, so memory holds one
    frame whatever the video's length. Times before the first frame get the first frame, times
    after the last the last one."""
    path = Path(path)
    k, previous = 0, None
    with _open(path) as c:
        stream = c.streams.video[0]  # single-threaded decoding: a small share of the time (docs/BENCHMARKS.md)
        start = _start(c)
        try:
            for frame in c.decode(stream):
                if frame.pts is None:
                    continue
                shown_from = frame.pts * frame.time_base - start
                while k < len(times) and times[k] < shown_from:
                    yield (frame if previous is None else previous).to_ndarray(format="rgb24")
                    k += 1
                if k == len(times):
                    return
                previous = frame
        except (av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: video decoding failed after {k} sampled frames ({e})") from None
    if previous is None:
        raise DecodeError(f"{path}: expected video frames, found none")
    rgb = previous.to_ndarray(format="rgb24")
    for _ in range(k, len(times)):
        yield rgb


def mono_16k(path: str | Path) -> Iterator[np.ndarray]:
    """The audio track as consecutive float32 chunks of mono 16 kHz samples from the container's
    start (silence first when the track starts later). Each channel is resampled once, by
    FFmpeg's resampler, then the channels are averaged."""
    path = Path(path)
    with _open(path) as c:
        stream = c.streams.audio[0]
        start = _start(c)
        resampler = None
        try:
            for frame in c.decode(stream):
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=SAMPLE_RATE)
                    begin = 0 if frame.pts is None else frame.pts * frame.time_base - start
                    if begin > 0:
                        yield np.zeros(int(round(begin * SAMPLE_RATE)), np.float32)
                for out in resampler.resample(frame):
                    yield out.to_ndarray().mean(axis=0, dtype=np.float32)
            if resampler is not None:
                for out in resampler.resample(None):
                    yield out.to_ndarray().mean(axis=0, dtype=np.float32)
        except (av.error.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: audio decoding failed ({e})") from None


def segment_audio(chunks: Iterator[np.ndarray], segments: int) -> Iterator[np.ndarray]:
    """Cut a 16 kHz mono stream into one (EXAMPLE_SAMPLES,) waveform per segment: segment t's
    starts at t seconds; missing samples are zeros. Keeps at most about a second of audio."""
    buffer, offset = np.zeros(0, np.float32), 0  # buffer[0] is sample number `offset`
    chunks = iter(chunks)
    for t in range(segments):
        begin = t * SAMPLE_RATE
        end = begin + EXAMPLE_SAMPLES
        while offset + len(buffer) < end:
            chunk = next(chunks, None)
            if chunk is None:
                break
            buffer = np.concatenate([buffer, chunk])
        piece = buffer[begin - offset:end - offset]
        yield np.pad(piece, (0, EXAMPLE_SAMPLES - len(piece)))
        drop = min(len(buffer), (t + 1) * SAMPLE_RATE - offset)
        buffer, offset = buffer[drop:], offset + drop
