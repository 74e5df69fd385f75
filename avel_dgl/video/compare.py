"""`avel-dgl compare-features`: features from `extract` against the AVE release's, video by video.

A model trained on the release's features only means something on features in the same space,
so before trusting it on their own videos users extract a few AVE videos themselves and compare.
The videos of an extract folder (videos.csv) are matched to rows of the release by YouTube id:
AVE's video files are named by it, and Annotations.txt's line i (VideoID field) is row i of the
release's HDF5 files (a VideoID on several lines: its first row; they are one clip).

Per video, modality and segment: the cosine similarity and the largest absolute difference of
our vector and the release's (visual: the 7x7x512 map flattened, or the 512-d pooled vector when
either side is pooled), the audio zero fraction (the release's audio embeddings are post-ReLU:
65% of the values of its audio_feature_noisy.h5 are exactly 0), and the segment shift that fits
best. Each modality of each video gets a verdict (VERDICTS); the summary line says what to check.

The thresholds are rules of thumb from built pairs (docs/VIDEO.md, "Checking your features"):
the same decoding gives float rounding only; another resampler or decoder keeps every segment's
cosine above 0.99 on generated clips; another video, or a shift, falls far below.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avel_dgl.data.ave import (ANNOTATIONS_FILE, AUDIO_DIM, AUDIO_FILE, FEATURE_KEY, VISUAL_DIM, VISUAL_FILE,
                               VISUAL_MAP_SHAPE, ArraySpec, open_dataset, read_annotations, read_rows)
from avel_dgl.errors import AvelError

IDENTICAL_RTOL = 1e-5  # largest difference / largest value: float32 rounding of the release's float64
CLOSE_COSINE = 0.99  # every segment at least this: the same recipe, decoded or resampled differently
SHIFT_GAIN = 0.05  # a shifted alignment fits this much better (mean cosine) than the given one...
SHIFTED_FIT = 0.95  # ...and fits well itself (two unrelated clips may fit a shift slightly better by chance)
MAX_SHIFT = 2  # segments tried either way
VERDICTS = {
    "identical": "identical up to float rounding",
    "close": "the same recipe up to decoding and resampling",
    "shifted": "shifted in time",
    "different": "a different feature space or another clip",
}


@dataclass
class ModalityResult:
    verdict: str  # a key of VERDICTS
    cosine: list[float]  # per segment
    max_diff: list[float]  # per segment: the largest |ours - release|
    shift: int  # the best-fitting shift: ours[t] ~ release[t + shift]
    compared_as: str  # "maps", "pooled" or "embeddings"


@dataclass
class VideoResult:
    video_id: str
    path: str
    ours_row: int
    release_row: int
    segments: int  # compared
    audio: ModalityResult | None
    visual: ModalityResult | None
    audio_zero_fraction: float | None  # ours
    release_audio_zero_fraction: float | None


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (n, d) arrays; two zero rows count as equal, one as opposite."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.where(na * nb == 0, 1, na * nb)
    return np.where(both, 1.0, cos)


def compare_modality(ours: np.ndarray, release: np.ndarray, compared_as: str) -> ModalityResult:
    """Ours and the release's (T, d) vectors of one video and modality (float64), compared."""
    cos = _cosine(ours, release)
    diff = np.abs(ours - release).max(axis=1)
    fits = {k: _cosine(ours[max(0, -k):len(ours) - max(0, k)], release[max(0, k):len(release) - max(0, -k)]).mean()
            for k in range(-MAX_SHIFT, MAX_SHIFT + 1) if abs(k) < len(ours)}
    shift = max(fits, key=fits.get)
    scale = max(np.abs(release).max(), 1e-12)
    if diff.max() <= IDENTICAL_RTOL * scale:
        verdict = "identical"
    elif shift != 0 and fits[shift] > fits[0] + SHIFT_GAIN and fits[shift] >= SHIFTED_FIT:
        verdict = "shifted"
    elif cos.min() >= CLOSE_COSINE:
        verdict = "close"
    else:
        verdict = "different"
    return ModalityResult(verdict, cos.round(6).tolist(), diff.round(6).tolist(), shift if verdict == "shifted" else 0,
                          compared_as)


# ---- reading both sides ------------------------------------------------------------------------

def _extract_rows(ours: Path) -> list[tuple[int, str, int]]:
    """(row, path, segments) of each video extract wrote features for, from OURS/videos.csv."""
    table = ours / "videos.csv"
    if not table.is_file():
        raise AvelError(f"{ours}: expected a folder written by `avel-dgl extract` (videos.csv, audio_feature.h5, "
                        f"visual_feature.h5), found no {table.name}")
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"row", "path", "segments"} - set(reader.fieldnames or ())
        if missing:
            raise AvelError(f"{table}: expected columns row, path, segments (extract's videos.csv), "
                            f"found {', '.join(reader.fieldnames or ()) or 'none'}")
        rows = []
        for number, r in enumerate(reader, 2):
            if not r["row"]:
                continue  # a video extract could not read
            try:
                rows.append((int(r["row"]), r["path"], int(r["segments"])))
            except ValueError:
                raise AvelError(f"{table}: line {number}: expected integer row and segments, "
                                f"found '{r['row']}' and '{r['segments']}'") from None
    return rows


def _feature_spec(path: Path, dims: int) -> ArraySpec:
    """The spec of a feature file of any row and segment count, by its rank."""
    shapes = {AUDIO_FILE: {3: (AUDIO_DIM,)}, VISUAL_FILE: {3: (VISUAL_DIM,), 5: VISUAL_MAP_SHAPE}}[path.name]
    return ArraySpec(FEATURE_KEY, ("N", "T", *shapes.get(dims, shapes[max(shapes)])), "feature")


def _read(path: Path, rows: list[int]) -> np.ndarray:
    """Rows of a feature file (its header checked), as float64."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            dims = f[FEATURE_KEY].ndim if FEATURE_KEY in f else 0
    except OSError:
        dims = 0  # open_dataset says what is wrong in one line
    with open_dataset(path, _feature_spec(path, dims)) as dset:
        return read_rows(dset, np.asarray(rows), str(path)).astype(np.float64)


def _release_rows(annotations: Path, release: Path, modalities: list[str]) -> dict[str, int]:
    """YouTube id -> the release's row, checked against the row count of its feature files."""
    table = read_annotations(annotations)
    for name in modalities:
        with open_dataset(release / name, _feature_spec(release / name, 5 if name == VISUAL_FILE else 3)) as d:
            if d.shape[0] != len(table):
                raise AvelError(f"{release / name}: expected {len(table)} rows (one per line of {annotations}), "
                                f"found {d.shape[0]}")
    first = {}
    for row, video_id in enumerate(table["video_id"]):
        first.setdefault(video_id, row)
    return first


def _pooled(x: np.ndarray) -> np.ndarray:
    return x.reshape(*x.shape[:2], -1, x.shape[-1]).mean(axis=2) if x.ndim == 5 else x


def compare_features(ours: str | Path, release: str | Path, annotations: str | Path | None = None) -> dict:
    """Compare an extract folder with the AVE release's folder. Returns the report (a dict:
    videos, unmatched paths, summary, verdict; what `--json` prints)."""
    ours, release = Path(ours), Path(release)
    if not release.is_dir():
        raise AvelError(f"{release}: expected the AVE release's folder (audio_feature.h5 and/or visual_feature.h5), "
                        f"found {'a file' if release.exists() else 'nothing'}")
    modalities = [name for name in (AUDIO_FILE, VISUAL_FILE) if (release / name).exists()]
    if not modalities:
        raise AvelError(f"{release}: expected {AUDIO_FILE} or {VISUAL_FILE} of the AVE release, found neither")
    listed = _extract_rows(ours)
    by_id = _release_rows(Path(annotations) if annotations else release / ANNOTATIONS_FILE, release, modalities)
    matched = [(row, path, segments, Path(path).stem) for row, path, segments in listed if Path(path).stem in by_id]
    unmatched = [path for row, path, segments in listed if Path(path).stem not in by_id]
    if not matched:
        example = Path(listed[0][1]).name if listed else "none"
        raise AvelError(f"{ours / 'videos.csv'}: expected videos named by the YouTube id of an Annotations.txt "
                        f"line (e.g. RUhOCu3LNXM.mp4), found no match among {len(listed)} (e.g. {example})")
    results = []
    for row, path, segments, video_id in matched:
        t = min(segments, 10)
        sides = {}
        for name in modalities:
            a, b = _read(ours / name, [row])[0][:t], _read(release / name, [by_id[video_id]])[0][:t]
            sides[name] = (a, b)
        audio = visual = None
        zero = release_zero = None
        if AUDIO_FILE in sides:
            a, b = sides[AUDIO_FILE]
            audio = compare_modality(a, b, "embeddings")
            zero, release_zero = float((a == 0).mean()), float((b == 0).mean())
        if VISUAL_FILE in sides:
            a, b = sides[VISUAL_FILE]
            as_maps = a.ndim == b.ndim == 4
            a, b = (a, b) if as_maps else (_pooled(a[None])[0], _pooled(b[None])[0])
            visual = compare_modality(a.reshape(t, -1), b.reshape(t, -1), "maps" if as_maps else "pooled")
        results.append(VideoResult(video_id, path, row, by_id[video_id], t, audio, visual, zero, release_zero))
    return {"videos": [asdict(r) for r in results], "unmatched": unmatched, **_summary(results)}


def _summary(results: list[VideoResult]) -> dict:
    summary = {}
    for name in ("audio", "visual"):
        parts = [getattr(r, name) for r in results if getattr(r, name) is not None]
        if not parts:
            continue
        cos = np.concatenate([p.cosine for p in parts])
        counts = {v: sum(p.verdict == v for p in parts) for v in VERDICTS}
        summary[name] = {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
                         "max_diff": round(float(max(max(p.max_diff) for p in parts)), 6),
                         "verdicts": {v: n for v, n in counts.items() if n}}
    zeros = [r.audio_zero_fraction for r in results if r.audio_zero_fraction is not None]
    if zeros:
        summary["audio"]["zero_fraction"] = round(float(np.mean(zeros)), 4)
        summary["audio"]["release_zero_fraction"] = round(float(np.mean(
            [r.release_audio_zero_fraction for r in results if r.audio_zero_fraction is not None])), 4)
    return {"summary": summary, "verdict": _verdict(summary, len(results))}


def _verdict(summary: dict, n: int) -> str:
    """One line: do the features land in the release's space, and if not, what to check."""
    advice = {("audio", "shifted"): "check the clip's start and trim (AVE's clips are the trimmed 10 s)",
              ("visual", "shifted"): "check --frame-rule (release-index) and the clip's start and trim",
              ("audio", "different"): "check the VGGish weights (vggish.pt) and that the file is the AVE clip",
              ("visual", "different"): "check --visual-weights keras and that the file is the AVE clip"}
    problems = []
    for name, s in summary.items():
        for verdict, count in s["verdicts"].items():
            if (name, verdict) in advice:
                problems.append(f"{name} {VERDICTS[verdict]} in {count} of {n} videos: {advice[name, verdict]}")
        if name == "audio" and s.get("release_zero_fraction", 0) > 0.3 and s.get("zero_fraction", 1) < 0.05:
            problems.append("audio has almost no zeros where the release's has "
                            f"{100 * s['release_zero_fraction']:.0f}%: not VGGish's post-ReLU embedding (PCA applied?)")
    if problems:
        return "MISMATCH: " + "; ".join(problems)
    kinds = ", ".join(f"{name} {'/'.join(sorted(s['verdicts']))}" for name, s in summary.items())
    return f"OK: {n} videos match the release ({kinds})"


def format_report(report: dict) -> str:
    """The plain-text report: per video and modality the cosine and largest difference per
    segment, then the summary and the verdict."""
    lines = []
    for v in report["videos"]:
        lines.append(f"{v['video_id']}  (ours row {v['ours_row']}, release row {v['release_row']}, "
                     f"{v['segments']} segments)  {v['path']}")
        for name in ("audio", "visual"):
            m = v[name]
            if m is None:
                continue
            shift = f" by {m['shift']:+d} segment(s): ours[t] ~ release[t{m['shift']:+d}]" \
                if m["verdict"] == "shifted" else ""
            lines.append(f"  {name:<6} {m['verdict']}{shift} ({m['compared_as']})")
            lines.append("    cosine   " + " ".join(f"{c:6.3f}" for c in m["cosine"]))
            lines.append("    max diff " + " ".join(f"{d:6.3g}" for d in m["max_diff"]))
        if v["audio_zero_fraction"] is not None:
            lines.append(f"  audio zeros: ours {100 * v['audio_zero_fraction']:.0f}%, "
                         f"release {100 * v['release_audio_zero_fraction']:.0f}%")
    if report["unmatched"]:
        lines.append(f"not in the release (no Annotations.txt line with their name): {len(report['unmatched'])} "
                     f"videos, e.g. {report['unmatched'][0]}")
    for name, s in report["summary"].items():
        zeros = (f"; zeros ours {100 * s['zero_fraction']:.0f}%, release {100 * s['release_zero_fraction']:.0f}%"
                 if "zero_fraction" in s else "")
        verdicts = ", ".join(f"{k} {n}" for k, n in s["verdicts"].items())
        lines.append(f"overall {name}: cosine mean {s['mean_cosine']:.4f}, min {s['min_cosine']:.4f}; "
                     f"max diff {s['max_diff']:.4g}{zeros}; {verdicts}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)
