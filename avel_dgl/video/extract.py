"""The AVE feature recipe over video files, resumable: per video, VGGish embeddings of each 1-s
segment's audio and the VGG19 pool5 maps of F frames per segment averaged into one map; the
AVE-format output folder (audio_feature.h5, visual_feature.h5, videos.csv).

Each finished video's features are kept in OUT/.avel_extract/ as one file (written atomically,
named by the video's path, size, modification time and the settings that change features), so
an interrupted or repeated run skips the videos already done, and the output HDF5 files are
assembled from them, one video at a time, and renamed into place only when complete. Frames go
through VGG19 `batch_size` at a time, so memory does not grow with the number of videos; with
the length of one video it grows only by that video's features (100 KB per second of full maps,
2 KB pooled).

Videos of different lengths share one T, the longest video's segment count: shorter videos are
zero-padded, and videos.csv gives each video's own segment count. A video whose file cannot be
read gets status `failed`, one warning line, and no row in the HDF5 files (videos.csv leaves its
row empty); a video without an audio track gets zero audio features and status `no_audio`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from avel_dgl.checkpoint import write_atomic, write_text_atomic
from avel_dgl.data.ave import AUDIO_DIM, AUDIO_FILE, FEATURE_KEY, VISUAL_DIM, VISUAL_FILE
from avel_dgl.data.cache import pool_maps
from avel_dgl.errors import AvelError
from avel_dgl.video.decode import (DecodeError, MediaInfo, frame_count, mono_16k, probe, release_frame_count,
                                   release_frame_indices, sample_times, sampled_frames, segment_audio)
from avel_dgl.video.vgg19 import MAP_SHAPE, VISUAL_WEIGHTS, VisualNet
from avel_dgl.video.vggish import AudioNet

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts")
LIST_EXTENSIONS = (".txt", ".lst")
PARTS_DIR = ".avel_extract"
VIDEOS_CSV = "videos.csv"
CSV_COLUMNS = ("row", "path", "duration", "segments", "frame_rate", "audio", "status", "message")
THUMB_HEIGHT = 64  # thumbnails kept for localize's timeline page, one per segment
AVE_FRAMES_PER_SEGMENT = 16
# Which frames of a segment go through VGG19 (avel_dgl.video.decode): the AVE release's frame-number
# rule, or the frames on screen at evenly spaced presentation times.
FRAME_RULES = ("release-index", "presentation-time")


@dataclass(frozen=True)
class Settings:
    frames_per_segment: int = AVE_FRAMES_PER_SEGMENT
    visual_weights: str = "keras"  # or "torchvision"
    pooled: bool = False  # visual (T, 512) instead of (T, 7, 7, 512)
    batch_size: int = 16  # frames (and audio examples) per network call
    frame_rule: str = "release-index"  # one of FRAME_RULES

    def __post_init__(self):
        if self.frames_per_segment < 1:
            raise AvelError(f"--frames-per-segment: expected a positive integer, found {self.frames_per_segment}")
        if self.batch_size < 1:
            raise AvelError(f"--batch-size: expected a positive integer, found {self.batch_size}")
        if self.visual_weights not in VISUAL_WEIGHTS:
            raise AvelError(f"--visual-weights: expected one of {', '.join(VISUAL_WEIGHTS)}, "
                            f"found '{self.visual_weights}'")
        if self.frame_rule not in FRAME_RULES:
            raise AvelError(f"--frame-rule: expected one of {', '.join(FRAME_RULES)}, found '{self.frame_rule}'")

    def key(self) -> str:
        """What changes a video's stored features (batch size does not)."""
        return (f"f{self.frames_per_segment}-{self.frame_rule}-{self.visual_weights}-"
                f"{'pooled' if self.pooled else 'maps'}")


@dataclass
class Networks:
    audio: AudioNet
    visual: VisualNet


def load_networks(settings: Settings, weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  weights: str = "published") -> Networks:
    """VGGish and VGG19 on `device`, with the published weights. `weights="random"` builds the
    same networks with random weights instead (tests and benchmarks: same computation, no files)."""
    if weights not in ("published", "random"):
        raise ValueError(f"weights: expected 'published' or 'random', found {weights!r}")
    visual = settings.visual_weights if weights == "published" else "random"
    return Networks(AudioNet(weights, weights_dir, device), VisualNet(visual, weights_dir, device))


# ---- which videos ------------------------------------------------------------------------------

def _listed(list_file: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if Path(line).is_absolute() else list_file.parent / line
        if not path.is_file():
            raise AvelError(f"{list_file}: line {number}: expected a video file, found no file at {path}")
        paths.append(path)
    return paths


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """Video files from INPUT arguments: files, folders (searched recursively for video
    extensions), and text files listing one path a line (relative to the list's folder)."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            videos = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                            and PARTS_DIR not in p.parts)
            if not videos:
                raise AvelError(f"{item}: expected video files ({', '.join(VIDEO_EXTENSIONS)}), found none")
            found += videos
        elif item.is_file():
            found += _listed(item) if item.suffix.lower() in LIST_EXTENSIONS else [item]
        else:
            raise AvelError(f"{item}: no such file or folder (expected a video, a folder of videos, "
                            f"or a .txt file listing them)")
    unique, seen = [], set()
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


# ---- one video ---------------------------------------------------------------------------------

@dataclass
class Part:
    """One video's features. visual: (T, 7, 7, 512) maps, or (T, 512) when pooled."""

    info: MediaInfo
    status: str  # "ok" or "no_audio"
    audio: np.ndarray  # (T, 128) float32
    visual: np.ndarray
    thumbs: np.ndarray  # (T, THUMB_HEIGHT, w, 3) uint8: the frame sampled mid-segment
    timing: dict = field(default_factory=dict)  # seconds: decode (decoding + preprocessing), networks


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    size = (THUMB_HEIGHT, max(1, round(w * THUMB_HEIGHT / h)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def network_inputs(path: str | Path, settings: Settings, visual_preprocess: Callable, log_mel: Callable) -> Iterator:
    """The decoding side of one video's features (what --jobs workers run), as a stream of
    items: ("info", MediaInfo), then ("visual", first frame number, preprocessed frames,
    thumbnails) per batch of frames, then ("audio", first segment, log-mel examples) per batch
    of segments, each with its decoding seconds last. Raises DecodeError when the file cannot be
    read."""
    tick = time.perf_counter
    info = probe(path)
    yield "info", info
    per, segments, batch_size = settings.frames_per_segment, info.segments, settings.batch_size
    if settings.frame_rule == "release-index":
        n_frames = release_frame_count(info) or frame_count(path)
        frames = sampled_frames(path, indices=release_frame_indices(n_frames, segments, per))
    else:
        frames = sampled_frames(path, times=sample_times(info, per))
    for start in range(0, segments * per, batch_size):
        t0 = tick()
        batch = list(itertools.islice(frames, batch_size))
        thumbs = [_thumbnail(rgb) for k, rgb in enumerate(batch, start) if k % per == per // 2]
        yield "visual", start, visual_preprocess(batch), thumbs, tick() - t0
    frames.close()  # the decoder's file now, not whenever the garbage collector gets to it
    if info.has_audio:
        waves = segment_audio(mono_16k(path), segments)
        for start in range(0, segments, batch_size):
            t0 = tick()
            examples = log_mel(np.stack(list(itertools.islice(waves, batch_size))))
            yield "audio", start, examples, tick() - t0
        waves.close()


class _Features:
    """The network side of one video's features: fed network_inputs' items in order, it runs
    the networks and keeps per-segment sums of the visual maps (pooled first when the output is
    pooled: both are means, so the order does not matter, and memory then holds 2 KB per segment
    instead of 100 KB)."""

    def __init__(self, nets: Networks, settings: Settings):
        self.nets, self.settings = nets, settings
        self.info, self.thumbs, self.timing = None, [], {"decode": 0.0, "networks": 0.0}

    def feed(self, item: tuple) -> None:
        kind, tick = item[0], time.perf_counter
        if kind == "info":
            self.info = item[1]
            segments = self.info.segments
            self.sums = np.zeros((segments, *((VISUAL_DIM,) if self.settings.pooled else MAP_SHAPE)), np.float64)
            self.audio = np.zeros((segments, AUDIO_DIM), np.float32)
            return
        t0 = tick()
        if kind == "visual":
            _, start, x, thumbs, decode_s = item
            self.thumbs += thumbs
            maps = self.nets.visual(x)
            per = self.settings.frames_per_segment
            for k, m in enumerate(pool_maps(maps) if self.settings.pooled else maps, start):
                self.sums[k // per] += m
        else:
            _, start, examples, decode_s = item
            self.audio[start:start + len(examples)] = self.nets.audio(examples)
        self.timing["decode"] += decode_s
        self.timing["networks"] += tick() - t0

    def part(self) -> Part:
        visual = (self.sums / self.settings.frames_per_segment).astype(np.float32)  # the mean (AVE: 16 frames)
        status = "ok" if self.info.has_audio else "no_audio"
        return Part(self.info, status, self.audio, visual, np.stack(self.thumbs), self.timing)


def extract_video(path: str | Path, nets: Networks, settings: Settings) -> Part:
    """Features of one video (raises DecodeError when it cannot be read)."""
    features = _Features(nets, settings)
    for item in network_inputs(path, settings, nets.visual.preprocess, nets.audio.log_mel):
        features.feed(item)
    return features.part()


def part_path(parts_dir: Path, video: Path, settings: Settings) -> Path:
    """Where a video's features are kept: named by its path, size, mtime and the settings."""
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{settings.key()}"
    return parts_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"


def save_part(path: Path, part: Part) -> None:
    meta = json.dumps({"info": asdict(part.info), "status": part.status})

    def write(f):
        np.savez(f, audio=part.audio, visual=part.visual, thumbs=part.thumbs, meta=np.array(meta))
    write_atomic(path, write)


def read_meta(path: Path) -> tuple[MediaInfo, str] | None:
    """A stored part's video facts and status, or None when it is unreadable (then redone)."""
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].item())
        return MediaInfo(**meta["info"]), meta["status"]
    except Exception:  # a foreign or damaged file: extract the video again
        return None


def read_part(path: Path) -> dict:
    """audio, visual, thumbs arrays of a stored part."""
    with np.load(path) as z:
        return {k: z[k] for k in ("audio", "visual", "thumbs")}


# ---- many videos -------------------------------------------------------------------------------

@dataclass
class Entry:
    """The outcome for one input video."""

    path: Path
    status: str  # ok, no_audio, failed
    info: MediaInfo | None = None
    part: Path | None = None
    message: str = ""


def _as_is(item):
    return item


class _Decoding(torch.utils.data.IterableDataset):
    """network_inputs of `videos` in DataLoader workers: worker w decodes videos w, w + K, ...,
    one at a time, so each video's items arrive in order; ("done",) or ("failed", message) ends
    a video's stream. Workers are forked: they share `nets`' preprocessing without copying it."""

    def __init__(self, videos: list[Path], settings: Settings, nets: Networks):
        self.videos, self.settings, self.nets = videos, settings, nets

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        for i in range(worker.id, len(self.videos), worker.num_workers):
            try:
                for item in network_inputs(self.videos[i], self.settings, self.nets.visual.preprocess,
                                           self.nets.audio.log_mel):
                    yield i, item
                yield i, ("done",)
            except DecodeError as e:
                yield i, ("failed", str(e))


def _extracted(videos: list[Path], settings: Settings, networks: Callable[[], Networks],
               jobs: int) -> Iterator[tuple[Path, Part | DecodeError]]:
    """(video, its features or why it cannot be read) for every video, in the order they finish.
    jobs = 1: decoded in this process, the networks built only once some video can be read.
    jobs = K > 1: decoded and preprocessed by K worker processes feeding the networks here. The
    networks see the same batches either way, so the features are the same bytes."""
    if jobs == 1:
        nets = None
        for video in videos:
            try:
                probe(video)  # an unreadable file fails here, before the networks are built for it
                nets = nets or networks()
                yield video, extract_video(video, nets, settings)
            except DecodeError as e:
                yield video, e
        return
    nets = networks()
    loader = torch.utils.data.DataLoader(_Decoding(videos, settings, nets), batch_size=None, num_workers=jobs,
                                         collate_fn=_as_is)
    building: dict[int, _Features] = {}
    for i, item in loader:
        if item[0] == "failed":
            building.pop(i, None)
            yield videos[i], DecodeError(item[1])
        elif item[0] == "done":
            yield videos[i], building.pop(i).part()
        else:
            building.setdefault(i, _Features(nets, settings)).feed(item)


def extract_parts(videos: list[Path], parts_dir: Path, settings: Settings, networks: Callable[[], Networks],
                  strict: bool = False, progress: bool = True, jobs: int = 1) -> list[Entry]:
    """Extract every video not already stored in `parts_dir` (`jobs` decoding processes).
    `networks()` is called once, only if some video needs extracting. An unreadable video is one
    warning line and a failed entry (with `strict`, an AvelError: the videos finished so far stay
    stored). Entries are in the order of `videos`."""
    from tqdm import tqdm

    if jobs < 1:
        raise AvelError(f"--jobs: expected a positive integer, found {jobs}")
    parts_dir.mkdir(parents=True, exist_ok=True)
    targets = {video: part_path(parts_dir, video, settings) for video in videos}
    outcomes = {video: read_meta(target) if target.is_file() else None for video, target in targets.items()}
    todo = [video for video, stored in outcomes.items() if stored is None]
    frames, t0 = 0, time.perf_counter()
    # leave=False: the bar is erased when done or stopped, so an error stays the one line it is.
    with tqdm(total=len(videos), initial=len(videos) - len(todo), unit="video", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for video, result in _extracted(todo, settings, networks, jobs):
            if isinstance(result, DecodeError):
                if strict:
                    raise result
                warnings.warn(f"{result}; skipped (status failed)")
                outcomes[video] = str(result)
            else:
                save_part(targets[video], result)
                outcomes[video] = result.info, result.status
                frames += result.info.segments * settings.frames_per_segment
                bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - t0, 1e-9):.1f}")
            bar.update()
    entries = []
    for video, outcome in outcomes.items():
        if isinstance(outcome, str):
            entries.append(Entry(video, "failed", message=outcome))
            continue
        info, status = outcome
        if status == "no_audio":
            warnings.warn(f"{video}: no audio track; its audio features are zeros (status no_audio)")
        entries.append(Entry(video, status, info, targets[video]))
    return entries


def _check_out(out: Path) -> None:
    """OUT is a folder extract made (or a new or empty one): never replace a user's files."""
    if out.exists() and not out.is_dir():
        raise AvelError(f"--out: expected a folder, found a file {out}")
    if out.is_dir() and not (out / PARTS_DIR).is_dir():
        ours = [n for n in (AUDIO_FILE, VISUAL_FILE, VIDEOS_CSV) if (out / n).exists()]
        if ours:
            raise AvelError(f"--out: {out / ours[0]} exists and was not written by extract "
                            f"(no {PARTS_DIR} folder); choose another --out")


def folder_shape(entries: list[Entry], out: Path | None = None) -> tuple[int, int]:
    """(N, T) of the AVE files for `entries`: the videos that could be read, the longest one's
    segment count. None read is an error."""
    done = [e for e in entries if e.status != "failed"]
    if not done:
        raise AvelError(f"no video could be read ({len(entries)} failed); nothing written{f' to {out}' if out else ''}")
    return len(done), max(e.info.segments for e in done)


def write_ave_folder(out: Path, entries: list[Entry], pooled: bool) -> tuple[int, int]:
    """audio_feature.h5 and visual_feature.h5 (N, T, ...) float32 under key 'avadataset' from the
    stored parts, one video at a time, then videos.csv; each written atomically. Returns (N, T)."""
    n, t = folder_shape(entries, out)
    done = [e for e in entries if e.status != "failed"]
    visual_shape = (VISUAL_DIM,) if pooled else MAP_SHAPE

    def writer(name: str, shape: tuple):
        def write(f):
            with h5py.File(f, "w") as h:
                dset = h.create_dataset(FEATURE_KEY, (len(done), t, *shape), "float32")
                for row, entry in enumerate(done):
                    x = read_part(entry.part)[name]
                    dset[row, :len(x)] = x  # shorter videos stay zero-padded
        return write

    write_atomic(out / AUDIO_FILE, writer("audio", (AUDIO_DIM,)))
    write_atomic(out / VISUAL_FILE, writer("visual", visual_shape))
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(CSV_COLUMNS)
    row = 0
    for e in entries:
        if e.status == "failed":
            w.writerow(["", e.path, "", "", "", "", "failed", e.message])
            continue
        w.writerow([row, e.path, f"{e.info.duration:.3f}", e.info.segments, f"{e.info.frame_rate:.3f}",
                    int(e.info.has_audio), e.status, ""])
        row += 1
    write_text_atomic(out / VIDEOS_CSV, text.getvalue())
    return len(done), t


def extract(inputs: list[str | Path], out: str | Path, settings: Settings, weights_dir: str | Path | None = None,
            device: str | torch.device = "cpu", strict: bool = False, weights: str = "published",
            progress: bool = True, jobs: int = 1) -> tuple[list[Entry], int, int]:
    """`avel-dgl extract`: features of every input video into the AVE-format folder `out`.
    Returns the entries and (N, T) of the files written.

    Under torchrun (a joined process group, avel_dgl.distributed) rank r of K extracts videos
    r, r + K, ... into the shared per-video store, the ranks gather their entries, and rank 0
    alone writes the AVE files; a rerun resumes from the store like a one-process run."""
    from avel_dgl import distributed

    out = Path(out)
    _check_out(out)
    videos = find_videos(inputs)
    mine = videos[distributed.rank()::distributed.world_size()]
    try:
        local, error = extract_parts(mine, out / PARTS_DIR, settings,
                                     lambda: load_networks(settings, weights_dir, device, weights), strict,
                                     progress, jobs), None
    except AvelError as e:  # every rank must reach the gather below, or the others wait forever
        local, error = [], e
    gathered = distributed.all_gather_object((local, None if error is None else str(error)))
    if error is not None:
        raise error
    for _, message in gathered:
        if message is not None:
            raise AvelError(message)
    by_video = {entry.path: entry for part, _ in gathered for entry in part}
    entries = [by_video[video] for video in videos]
    distributed.main_only(write_ave_folder, out, entries, settings.pooled)
    n, t = folder_shape(entries)
    return entries, n, t
