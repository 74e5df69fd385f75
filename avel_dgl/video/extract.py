"""The AVE feature recipe over video files, resumable: per video, VGGish embeddings of each 1-s
segment's audio and the VGG19 pool5 maps of F frames per segment averaged into one map; the
AVE-format output folder (audio_feature.h5, visual_feature.h5, videos.csv).

Each finished video's features are kept in OUT/.avel_extract/ as one file (written atomically,
named by the cache key: the video's path, size and modification time, the recipe's version, the
settings that change features and the identity of the weights loaded), so an interrupted or
repeated run skips the videos already done and a change of recipe, option or weights never
reuses old features. The output files are assembled from the parts, one video at a time, under
temporary names, and renamed into place together only when all are complete. Frames go
through VGG19 `batch_size` at a time, so memory does not grow with the number of videos; with
the length of one video it grows only by that video's features (100 KB per second of full maps,
2 KB pooled). With `jobs` > 1, worker processes decode and preprocess while the networks run
here (the same bytes); under torchrun each rank extracts its share of the videos into the one
per-video store and rank 0 assembles the files.

Videos of different lengths share one T, the longest video's segment count: shorter videos are
zero-padded, and videos.csv gives each video's own segment count. A video whose file cannot be
read gets status `failed`, one warning line, and no row in the HDF5 files (videos.csv leaves its
row empty); a video without an audio track gets zero audio features and status `no_audio`.
"""

from __future__ import annotations

import contextlib
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

from avel_dgl import interrupt
from avel_dgl.outputs import (OwnedFolder, check_free_space, check_owned_folder, write_all_or_none, write_atomic,
                              write_failure)
from avel_dgl.data.ave import AUDIO_DIM, AUDIO_FILE, FEATURE_KEY, N_SEGMENTS, VISUAL_DIM, VISUAL_FILE
from avel_dgl.data.cache import pool_maps
from avel_dgl.errors import AvelError
from avel_dgl.format import VISUAL_WEIGHTS
from avel_dgl.video.decode import (DecodeError, MediaInfo, frame_count, mono_16k, probe, release_frame_count,
                                   release_frame_indices, sample_times, sampled_frames, segment_audio)
from avel_dgl.video.vgg19 import MAP_SHAPE, VisualNet
from avel_dgl.video.vggish import AudioNet
from avel_dgl.video.weights import VGG19_KERAS, VGG19_TORCHVISION, VGGISH, digest, locate

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts")
LIST_EXTENSIONS = (".txt", ".lst")
PARTS_DIR = ".avel_extract"
VIDEOS_CSV = "videos.csv"
CSV_COLUMNS = ("row", "path", "duration", "segments", "frame_rate", "audio", "status", "message")
RECORD = "recipe.json"  # in PARTS_DIR: the cache key's recipe, settings and weights of the assembled files
THUMB_HEIGHT = 64  # thumbnails kept for localize's timeline page, one per segment
AVE_FRAMES_PER_SEGMENT = 16
# Which frames of a segment go through VGG19 (avel_dgl.video.decode): the AVE release's frame-number
# rule, or the frames on screen at evenly spaced presentation times.
FRAME_RULES = ("release-index", "presentation-time")
MAX_FRAMES_PER_SEGMENT = 60  # a 60-fps video's every frame; more only repeat frames, at great cost
# The recipe's version, part of every video's cache key: raise it with any change of the code that
# changes features (sampling, preprocessing, networks), so that no stored part of an older recipe
# is reused. 2: own VGGish, weights identity in the key, the release's frame-number rule (an option
# of the key too).
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Settings:
    frames_per_segment: int = AVE_FRAMES_PER_SEGMENT
    visual_weights: str = "keras"  # or "torchvision"
    pooled: bool = False  # visual (T, 512) instead of (T, 7, 7, 512)
    batch_size: int = 16  # frames (and audio examples) per network call
    frame_rule: str = "release-index"  # one of FRAME_RULES

    def __post_init__(self):
        if not 1 <= self.frames_per_segment <= MAX_FRAMES_PER_SEGMENT:
            raise AvelError(f"--frames-per-segment: expected 1 to {MAX_FRAMES_PER_SEGMENT} (the AVE recipe: "
                            f"{AVE_FRAMES_PER_SEGMENT}), found {self.frames_per_segment}")
        if self.batch_size < 1:
            raise AvelError(f"--batch-size: expected a positive integer, found {self.batch_size}")
        if self.visual_weights not in VISUAL_WEIGHTS:
            raise AvelError(f"--visual-weights: expected one of {', '.join(VISUAL_WEIGHTS)}, "
                            f"found '{self.visual_weights}'")
        if self.frame_rule not in FRAME_RULES:
            raise AvelError(f"--frame-rule: expected one of {', '.join(FRAME_RULES)}, found '{self.frame_rule}'")

    def key(self) -> str:
        """The options that change a video's stored features (batch size does not)."""
        return (f"f{self.frames_per_segment}-{self.frame_rule}-{self.visual_weights}-"
                f"{'pooled' if self.pooled else 'maps'}")


@dataclass
class Networks:
    audio: AudioNet
    visual: VisualNet


def _weight_files(settings: Settings) -> list:
    return [VGGISH, VGG19_KERAS if settings.visual_weights == "keras" else VGG19_TORCHVISION]


def weights_identity(settings: Settings, weights_dir: str | Path | None = None, weights: str = "published") -> str:
    """Which weights the networks will load, for the cache key: each file's name and digest, or
    "random". Locates (downloads) every file first, so that all missing ones are named in one
    message before any work."""
    if weights == "random":
        return "random"
    return ",".join(f"{p.name}:{digest(p)}" for p in locate(_weight_files(settings), weights_dir))


def load_networks(settings: Settings, weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  weights: str = "published") -> Networks:
    """VGGish and VGG19 on `device`, with the published weights. `weights="random"` builds the
    same networks with random weights instead (tests and benchmarks: same computation, no files)."""
    if weights not in ("published", "random"):
        raise ValueError(f"weights: expected 'published' or 'random', found {weights!r}")
    if weights == "random":
        return Networks(AudioNet(None, device), VisualNet("random", None, device))
    audio, visual = locate(_weight_files(settings), weights_dir)
    return Networks(AudioNet(audio, device), VisualNet(settings.visual_weights, visual, device))


# ---- which videos ------------------------------------------------------------------------------

def _listed(list_file: Path) -> list[Path]:
    """The paths a list file names. A listed file that does not exist is kept: it fails like an
    unreadable video (a warning and a failed row; an error with --strict), one rule for both."""
    paths = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        paths.append(Path(line) if Path(line).is_absolute() else list_file.parent / line)
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
    thumbs: np.ndarray  # (T, THUMB_HEIGHT, w, 3) uint8: per segment, its sampled frame nearest the middle
    thumb_times: np.ndarray  # (T,) float: the presentation time (s) of each thumbnail's frame
    timing: dict = field(default_factory=dict)  # seconds: decode (decoding + preprocessing), networks


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    size = (THUMB_HEIGHT, max(1, round(w * THUMB_HEIGHT / h)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def network_inputs(path: str | Path, settings: Settings, visual_preprocess: Callable, log_mel: Callable) -> Iterator:
    """The decoding side of one video's features (what --jobs workers run), as a stream of
    items: ("info", MediaInfo, thumbnail times), then ("visual", first frame number, preprocessed
    frames, thumbnails) per batch of frames, then ("audio", first segment, log-mel examples) per
    batch of segments, each with its decoding seconds last. Raises DecodeError when the file
    cannot be read."""
    tick = time.perf_counter
    info = probe(path)
    per, segments, batch_size = settings.frames_per_segment, info.segments, settings.batch_size
    if settings.frame_rule == "release-index":
        indices = release_frame_indices(release_frame_count(info) or frame_count(path), segments, per)
        times = [i / info.frame_rate if info.frame_rate else 0.0 for i in indices]  # for the thumbnails only
        frames = sampled_frames(path, indices=indices)
    else:
        times = sample_times(info, per)
        frames = sampled_frames(path, times=times)
    # Each segment's thumbnail is its sampled frame nearest the middle, at that frame's time.
    yield "info", info, np.array([float(times[t * per + per // 2]) for t in range(segments)])
    for start in range(0, segments * per, batch_size):
        t0 = tick()
        batch = list(itertools.islice(frames, batch_size))
        thumbs = [_thumbnail(rgb) for k, rgb in enumerate(batch, start) if k % per == per // 2]
        yield "visual", start, visual_preprocess(batch), thumbs, tick() - t0
    frames.close()  # the decoder's file now, not whenever the garbage collector gets to it
    if info.has_audio:  # one VGGish example per segment
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
            _, self.info, self.thumb_times = item
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
        return Part(self.info, status, self.audio, visual, np.stack(self.thumbs), self.thumb_times, self.timing)


def extract_video(path: str | Path, nets: Networks, settings: Settings) -> Part:
    """Features of one video (raises DecodeError when it cannot be read)."""
    features = _Features(nets, settings)
    for item in network_inputs(path, settings, nets.visual.preprocess, nets.audio.log_mel):
        features.feed(item)
    return features.part()


def part_path(parts_dir: Path, video: Path, settings: Settings, weights_id: str) -> Path:
    """Where a video's features are kept, named by the cache key: the video's path, size and
    modification time, the recipe's version, the settings that change features, and the weights
    (`weights_identity`)."""
    stat = video.stat()
    key = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|r{RECIPE_VERSION}|{settings.key()}|{weights_id}"
    return parts_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"


def save_part(path: Path, part: Part) -> None:
    """Store a part atomically, its folder created if needed. The archive is built in memory and
    written in one go: a full disk then fails one write, which write_atomic cleans up (np.savez
    writing into the file itself left a half-closed zip that complained at exit)."""
    meta = json.dumps({"info": asdict(part.info), "status": part.status})
    buffer = io.BytesIO()
    np.savez(buffer, audio=part.audio, visual=part.visual, thumbs=part.thumbs, thumb_times=part.thumb_times,
             meta=np.array(meta))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failure(path.parent, e, "the videos finished so far are kept") from None
    with interrupt.deferred():  # a signal waits until the part is whole (a second or so)
        write_atomic(path, lambda f: f.write(buffer.getbuffer()))


def read_meta(path: Path) -> tuple[MediaInfo, str] | None:
    """A stored part's video facts and status, or None when it is unreadable (then redone)."""
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].item())
        return MediaInfo(**meta["info"]), meta["status"]
    except Exception:  # a foreign or damaged file: extract the video again
        return None


def read_part(path: Path) -> dict:
    """audio, visual, thumbs and thumb_times arrays of a stored part."""
    with np.load(path) as z:
        return {k: z[k] for k in ("audio", "visual", "thumbs", "thumb_times")}


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
                  strict: bool = False, progress: bool = True, jobs: int = 1, *, weights_id: str) -> list[Entry]:
    """Extract every video not already stored in `parts_dir` (created with the first part) under
    the cache key of `settings` and `weights_id` (`weights_identity`), with `jobs` decoding
    processes. `networks()` is called once, only if some video needs extracting. A missing or
    unreadable video is one warning line and a failed entry (with `strict`, an AvelError: the
    videos finished so far stay stored). Entries are in the order of `videos`."""
    from tqdm import tqdm

    if jobs < 1:
        raise AvelError(f"--jobs: expected a positive integer, found {jobs}")
    outcomes: dict[Path, tuple[MediaInfo, str] | str | None] = {}  # stored facts, a failure's message, or to do
    targets = {}
    for video in videos:
        if not video.is_file():
            outcomes[video] = f"{video}: no such file"
            continue
        targets[video] = part_path(parts_dir, video, settings, weights_id)
        outcomes[video] = read_meta(targets[video]) if targets[video].is_file() else None

    def failed(video: Path, message: str) -> None:
        if strict:
            raise AvelError(message)
        warnings.warn(f"{message}; skipped (status failed)")
        outcomes[video] = message

    for video, outcome in outcomes.items():
        if isinstance(outcome, str):
            failed(video, outcome)
    todo = [video for video, outcome in outcomes.items() if outcome is None]
    frames, t0 = 0, time.perf_counter()
    # leave=False: the bar is erased when done or stopped, so an error stays the one line it is.
    with tqdm(total=len(videos), initial=len(videos) - len(todo), unit="video", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for video, result in _extracted(todo, settings, networks, jobs):
            if isinstance(result, DecodeError):
                failed(video, str(result))
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


# ---- checks before any work, and what a failed or stopped run leaves -------------------------

@contextlib.contextmanager
def removed_if_left_empty(folder: Path):
    """The folders on the way to `folder` that do not exist yet are removed again if the block
    fails and leaves them empty: a failed run leaves no empty folder behind."""
    new = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in new:  # deepest first; rmdir removes only an empty folder
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


EXTRACT_FOLDER = OwnedFolder("extract folder", PARTS_DIR)


def recipe_record(settings: Settings, weights_id: str) -> dict:
    """What made a folder's assembled files: the cache key without the videos."""
    return {"recipe": RECIPE_VERSION, "frames_per_segment": settings.frames_per_segment,
            "frame_rule": settings.frame_rule, "visual_weights": settings.visual_weights,
            "pooled": settings.pooled, "weights": weights_id}


def check_recipe(out: Path, record: dict, overwrite: bool) -> None:
    """Features already assembled in OUT are replaced by features made otherwise (recipe,
    options, weights) only with --overwrite: a rerun with --pooled must not silently turn a
    folder of full maps into pooled ones."""
    if not any((out / n).exists() for n in (AUDIO_FILE, VISUAL_FILE)) or overwrite:
        return
    try:
        found = json.loads((out / PARTS_DIR / RECORD).read_text())
    except (OSError, ValueError):
        found = None
    if found == record:
        return
    if not isinstance(found, dict):
        was = "an unrecorded recipe (an earlier avel-dgl)"
    else:
        key = next(k for k in record if found.get(k) != record[k])
        was = f"{key} {found.get(key)}, this run {record[key]}"
    raise AvelError(f"--out: {out} holds features made with {was}; replace them with --overwrite, "
                    f"or choose another --out")


THUMB_BYTES = THUMB_HEIGHT * 114 * 3  # a 16:9 thumbnail, stored with each segment's features


def check_extract_space(out: Path, videos: list[Path], settings: Settings, weights_id: str) -> None:
    """Before any work: the parts still to extract and the assembled files must fit in the free
    space of OUT's file system (one line with both figures). Probes the videos not yet stored."""
    stored, new = [], []
    for video in videos:
        if not video.is_file():
            continue
        target = part_path(out / PARTS_DIR, video, settings, weights_id)
        meta = read_meta(target) if target.is_file() else None
        try:
            (stored if meta else new).append(meta[0].segments if meta else probe(video).segments)
        except DecodeError:  # fails later, with its warning
            continue
    if not stored + new:
        return
    per_segment = 4 * (AUDIO_DIM + (VISUAL_DIM if settings.pooled else int(np.prod(MAP_SHAPE))))
    t, n = max(stored + new), len(stored + new)
    need = sum(new) * (per_segment + THUMB_BYTES) + n * t * per_segment
    check_free_space(out, need, f"--out: extracting {sum(new)} segments and assembling {n} videos x {t} segments")


def folder_shape(entries: list[Entry], out: Path | None = None) -> tuple[int, int]:
    """(N, T) of the AVE files for `entries`: the videos that could be read, the longest one's
    segment count. None read is an error."""
    done = [e for e in entries if e.status != "failed"]
    if not done:
        raise AvelError(f"no video could be read ({len(entries)} failed); nothing written{f' to {out}' if out else ''}")
    return len(done), max(e.info.segments for e in done)


def write_ave_folder(out: Path, entries: list[Entry], pooled: bool, record: dict | None = None) -> tuple[int, int]:
    """audio_feature.h5 and visual_feature.h5 (N, T, ...) float32 under key 'avadataset' from the
    stored parts, one video at a time, videos.csv, and the `record` of what made them
    (recipe_record), all or none. Returns (N, T)."""
    n, t = folder_shape(entries, out)
    done = [e for e in entries if e.status != "failed"]
    visual_shape = (VISUAL_DIM,) if pooled else MAP_SHAPE

    def features(name: str, shape: tuple):
        def write(path: Path):
            with h5py.File(path, "w") as h:
                dset = h.create_dataset(FEATURE_KEY, (len(done), t, *shape), "float32")
                for row, entry in enumerate(done):
                    x = read_part(entry.part)[name]
                    dset[row, :len(x)] = x  # shorter videos stay zero-padded
        return write

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
    outputs = {out / AUDIO_FILE: features("audio", (AUDIO_DIM,)), out / VISUAL_FILE: features("visual", visual_shape),
               out / VIDEOS_CSV: lambda path: path.write_text(text.getvalue(), newline="")}
    if record is not None:
        outputs[out / PARTS_DIR / RECORD] = lambda path: path.write_text(json.dumps(record, indent=1) + "\n")
    write_all_or_none(outputs)
    return n, t


def warn_lengths(entries: list[Entry], t: int) -> None:
    """One warning line when the folder's videos are not all AVE's 10 segments long."""
    lengths = sorted({e.info.segments for e in entries if e.status != "failed"})
    if len(lengths) > 1:
        warnings.warn(f"videos of {lengths[0]} to {lengths[-1]} segments: the shorter ones are zero-padded to "
                      f"T = {t} (videos.csv gives each video's own length); predict, evaluate and train read "
                      f"{N_SEGMENTS}-segment videos, where padded segments mean nothing: extract clips of one "
                      f"length together, or run localize, which takes each video at its own length")
    elif t != N_SEGMENTS:
        warnings.warn(f"T = {t}: predict, evaluate and train read {N_SEGMENTS}-segment videos only; "
                      f"localize takes videos of any length")


def extract(inputs: list[str | Path], out: str | Path, settings: Settings, weights_dir: str | Path | None = None,
            device: str | torch.device = "cpu", strict: bool = False, weights: str = "published",
            progress: bool = True, jobs: int = 1, overwrite: bool = False) -> tuple[list[Entry], int, int]:
    """`avel-dgl extract`: features of every input video into the AVE-format folder `out`.
    Everything that can be checked is checked before any work: OUT's place, the inputs, every
    weight file, the settings of features already in OUT, the free space. Returns the entries
    and (N, T) of the files written.

    Under torchrun (a joined process group, avel_dgl.distributed) rank r of K extracts videos
    r, r + K, ... into the shared per-video store, the ranks gather their entries, and rank 0
    alone writes the AVE files; a rerun resumes from the store like a one-process run."""
    from avel_dgl import distributed

    out = Path(out)
    check_owned_folder(out, EXTRACT_FOLDER, overwrite=None)  # features are added and updated, never a whole folder replaced
    videos = find_videos(inputs)
    weights_id = weights_identity(settings, weights_dir, weights)
    record = recipe_record(settings, weights_id)
    check_recipe(out, record, overwrite)
    check_extract_space(out, videos, settings, weights_id)
    parts_dir = out / PARTS_DIR
    mine = videos[distributed.rank()::distributed.world_size()]
    with removed_if_left_empty(parts_dir), \
            interrupt.stoppable("extract", f"the videos finished so far are kept in {parts_dir}; rerun the same "
                                           f"command to continue"):
        try:
            local, error = extract_parts(mine, parts_dir, settings,
                                         lambda: load_networks(settings, weights_dir, device, weights), strict,
                                         progress, jobs, weights_id=weights_id), None
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
        distributed.main_only(write_ave_folder, out, entries, settings.pooled, record)
    n, t = folder_shape(entries)
    if distributed.is_main():
        warn_lengths(entries, t)
    return entries, n, t
