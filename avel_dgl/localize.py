"""Videos in, events out (`avel-dgl localize`): extract features into a reused cache, predict
segment probabilities for videos of any length T, write events with predict's logic and output
format plus each video's source path, and an HTML timeline page.

A model trained on AVE's 10-s videos meets other lengths in one of two ways:
- "whole": the video is one graph of T segments (the TCN and the graph's temporal edges are local,
  so the network runs on any T);
- "windows": 10-s windows with a stride of 10 s, the last one ending at T (overlapping its
  neighbour, whose probabilities it is averaged with); T <= 10 runs whole.
DEFAULT_MODE is the one that scored better on stitched long synthetic videos: whole, by 1-2.6
points of segment accuracy at every length from 20 to 120 s (benchmarks/long_videos.py,
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from avel_dgl import engine, interrupt
from avel_dgl.outputs import check_folder_place, check_output, html_mark, write_text_atomic
from avel_dgl.data.ave import BACKGROUND, CLASS_NAMES, N_SEGMENTS
from avel_dgl.data.cache import pool_maps, user_cache_dir
from avel_dgl.errors import AvelError
from avel_dgl.predict import SEGMENT_SECONDS, events_from_probs, output_files, write_predictions
from avel_dgl.video.extract import (Settings, extract_parts, find_videos, load_networks, read_part,
                                    removed_if_left_empty, weights_identity)

MODES = ("whole", "windows")
DEFAULT_MODE = "whole"
WINDOW = N_SEGMENTS  # the length AVE models are trained on


def check_mode(mode: str) -> None:
    """A localize mode is one of MODES (checked by `localize` before any work, and by `video_probs`
    for its other callers)."""
    if mode not in MODES:
        raise AvelError(f"--mode: expected one of {', '.join(MODES)}, found '{mode}'")


def default_cache_dir() -> Path:
    """The user's cache folder for extracted features: features/ in avel-dgl's user cache."""
    return user_cache_dir() / "features"


# ---- probabilities for any T -------------------------------------------------------------------

def _probs(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> np.ndarray:
    """(B, t, 29) softmax probabilities of B videos of t segments each."""
    return torch.softmax(engine.feature_logits(model, audio, visual, len(audio)), dim=-1).cpu().numpy()


def window_starts(t: int, window: int = WINDOW) -> list[int]:
    """Starts of the windows covering t segments: every `window`, the last ending at t."""
    if t <= window:
        return [0]
    starts = list(range(0, t - window + 1, window))
    return starts if starts[-1] + window == t else starts + [t - window]


def video_probs(model: torch.nn.Module, audio: np.ndarray, visual: np.ndarray, mode: str = DEFAULT_MODE,
                window: int = WINDOW) -> np.ndarray:
    """(T, 29) segment probabilities of one video from audio (T, 128) and pooled visual (T, 512);
    `mode` one of MODES."""
    check_mode(mode)
    a, v = torch.from_numpy(np.asarray(audio, np.float32)), torch.from_numpy(np.asarray(visual, np.float32))
    t = a.shape[0]
    if mode == "whole" or t <= window:
        return _probs(model, a[None], v[None])[0]
    starts = window_starts(t, window)
    probs = _probs(model, torch.stack([a[s:s + window] for s in starts]), torch.stack([v[s:s + window] for s in starts]))
    total, count = np.zeros((t, probs.shape[-1])), np.zeros((t, 1))
    for s, p in zip(starts, probs):
        total[s:s + window] += p
        count[s:s + window] += 1
    return (total / count).astype(np.float32)


# ---- the timeline page -------------------------------------------------------------------------

def class_colour(c: int) -> str:
    """Well-separated hues for neighbouring class indices (golden-angle steps); grey background."""
    return "#888" if c == BACKGROUND else f"hsl({(c * 137.508) % 360:.0f}, 62%, 38%)"


def _jpeg(thumb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(thumb).save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 15px; margin: 28px 0 6px; word-break: break-all; }
.meta { color: #555; margin-bottom: 8px; }
.scroll { overflow-x: auto; }
.grid { display: grid; grid-template-columns: 190px repeat(var(--t), minmax(28px, 114px)); align-items: stretch; }
.label { font-size: 12px; padding: 2px 8px 2px 0; text-align: left; white-space: nowrap; overflow: hidden;
         text-overflow: ellipsis; align-self: center; }
.thumb { padding-right: 2px; }
.thumb img { width: 100%; display: block; }
.events { grid-column: 2 / -1; position: relative; height: 30px; background: #f2f2f2; margin: 4px 0; }
.bar { position: absolute; top: 3px; bottom: 3px; color: #fff; font-size: 12px; padding: 3px 6px;
       box-sizing: border-box; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; border-radius: 3px; }
.tick { font-size: 11px; color: #555; border-left: 1px solid #bbb; padding-left: 2px; }
.cell { font-size: 11px; text-align: center; border: 1px solid #fff; padding: 2px 0; }
.none { color: #555; font-style: italic; }
.failed li { word-break: break-all; }
"""


def _video_html(title: str, meta: str, probs: np.ndarray, thumbs: np.ndarray | None, thumb_times: np.ndarray | None,
                min_prob: float) -> str:
    t = probs.shape[0]
    rows = ['<div class="label">frames</div>']
    for s in range(t):
        img = ""
        if thumbs is not None:
            at = f"frame at {thumb_times[s]:.2f} s" if thumb_times is not None else f"frame of second {s}"
            img = f'<img src="{_jpeg(thumbs[s])}" alt="{at}" title="{at}">'
        rows.append(f'<div class="thumb">{img}</div>')
    events = events_from_probs(probs)
    bars = "".join(
        f'<div class="bar" style="left:{100 * e["start"] / (t * SEGMENT_SECONDS):.4f}%;'
        f'width:{100 * (e["end"] - e["start"]) / (t * SEGMENT_SECONDS):.4f}%;background:{class_colour(e["class"])}" '
        f'title="{html.escape(e["name"])}: {e["start"]:g}-{e["end"]:g} s, confidence {e["confidence"]:.2f}">'
        f'{html.escape(e["name"])} {e["confidence"]:.2f}</div>' for e in events)
    rows.append('<div class="label">events</div>')
    rows.append(f'<div class="events">{bars or "<span class=none>&nbsp;no event detected</span>"}</div>')
    rows.append('<div class="label">seconds</div>')
    rows += [f'<div class="tick">{s * SEGMENT_SECONDS:g}</div>' for s in range(t)]
    # Probability rows: every class that reaches min_prob somewhere, most probable first.
    shown = [c for c in np.argsort(-probs.max(0)) if probs[:, c].max() >= min_prob]
    for c in shown:
        rows.append(f'<div class="label" title="{html.escape(CLASS_NAMES[c])}">'
                    f'<span style="color:{class_colour(c)}">&#9632;</span> {html.escape(CLASS_NAMES[c])}</div>')
        for s in range(t):
            p = float(probs[s, c])
            text = "#fff" if p > 0.55 else "#222"
            rows.append(f'<div class="cell" style="background:rgba(25,80,170,{p:.3f});color:{text}" '
                        f'title="{html.escape(CLASS_NAMES[c])}, {s}-{s + 1} s: {p:.3f}">{p:.2f}</div>')
    return (f'<section><h2>{html.escape(title)}</h2><div class="meta">{html.escape(meta)}</div>'
            f'<div class="scroll"><div class="grid" style="--t:{t}">{"".join(rows)}</div></div></section>')


def timeline_page(videos: list[dict], header: str, min_prob: float = 0.1,
                  failed: list[tuple[str, str]] = ()) -> str:
    """A self-contained HTML page: per video, thumbnails (one per second: the sampled frame
    nearest its middle, its time in the tooltip), the detected events as labelled bars, and the
    class probabilities of every segment (classes reaching `min_prob`); then the videos that
    could not be read, with why. `videos`: dicts with title, meta, probs (T, 29), thumbs
    (T, h, w, 3) or None, thumb_times (T,) or None; `failed`: (path, message) pairs."""
    body = "".join(_video_html(v["title"], v["meta"], v["probs"], v.get("thumbs"), v.get("thumb_times"), min_prob)
                   for v in videos)
    if failed:
        items = "".join(f"<li>{html.escape(message)}</li>" for _, message in failed)
        body += (f'<section class="failed"><h2>{len(failed)} of {len(videos) + len(failed)} videos could not be '
                 f'read (not above)</h2><ul>{items}</ul></section>')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">{html_mark("localize")}<title>avel-dgl localize</title>'
            f'<style>{PAGE_STYLE}</style></head><body><h1>avel-dgl localize</h1>'
            f'<div class="meta">{html.escape(header)}</div>{body}</body></html>\n')


# ---- the command -------------------------------------------------------------------------------

def check_html(path: str | Path | None, overwrite: bool = False) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise AvelError(f"--html: expected a file name ending in .html, found '{path.name}'")
    return check_output(path, overwrite, option="--html", kind="a file name ending in .html")


def localize(inputs: list[str | Path], model: torch.nn.Module | Callable[[], torch.nn.Module], out: str | Path,
             html_out: str | Path | None = None, cache_dir: str | Path | None = None, settings: Settings | None = None,
             mode: str = DEFAULT_MODE, weights_dir: str | Path | None = None, device: str | torch.device = "cpu",
             strict: bool = False, checkpoint: str | Path | None = None, progress: bool = True, networks=None,
             overwrite: bool = False) -> dict:
    """Extract (reusing the cache), predict and write events (+ the timeline page). Every place
    written and the mode are checked first; then `model` is loaded when it is a loader (the
    command's: a bad checkpoint fails in seconds, before extracting). `networks` overrides the
    feature networks' factory (tests: random weights, cached under the weights identity
    "random"). Returns a summary."""
    check_mode(mode)
    output_files(out, overwrite)  # before extracting: a bad --out costs nothing
    out, html_out = Path(out), check_html(html_out, overwrite)
    settings = Settings(pooled=True) if settings is None else settings
    cache_dir = check_folder_place(cache_dir if cache_dir is not None else default_cache_dir(), "--feature-cache")
    if not isinstance(model, torch.nn.Module):
        model = model()
    videos = find_videos(inputs)
    if networks is None:
        weights_id = weights_identity(settings, weights_dir)  # every missing weight file in one message
        networks = lambda: load_networks(settings, weights_dir, device)  # noqa: E731
    else:
        weights_id = "random"
    with removed_if_left_empty(cache_dir), \
            interrupt.stoppable("localize", f"the videos finished so far are kept in {cache_dir}; rerun the same "
                                            f"command to continue"):
        return _localize(videos, model, out, html_out, cache_dir, settings, mode, networks, weights_id, strict,
                         checkpoint, progress, overwrite)


def _localize(videos, model, out, html_out, cache_dir, settings, mode, networks, weights_id, strict, checkpoint,
              progress, overwrite) -> dict:
    entries = extract_parts(videos, cache_dir, settings, networks, strict, progress, weights_id=weights_id)
    done = [(row, e) for row, e in enumerate(entries) if e.status != "failed"]
    if not done:
        raise AvelError(f"no video could be read ({len(entries)} failed); nothing written")
    paths = {row: str(e.path) for row, e in done}
    pages = []

    def chunks():
        for row, e in done:
            part = read_part(e.part)
            visual = part["visual"] if part["visual"].ndim == 2 else pool_maps(part["visual"])
            probs = video_probs(model, part["audio"], visual, mode)
            if html_out is not None:
                pages.append({"title": str(e.path), "probs": probs, "thumbs": part["thumbs"],
                              "thumb_times": part["thumb_times"],
                              "meta": f"{e.info.duration:.2f} s, {e.info.segments} segment"
                                      + ("" if e.info.segments == 1 else "s")
                                      + ("" if e.status == "ok" else f", {e.status}")})
            yield [row], [probs]

    header = {"checkpoint": None if checkpoint is None else str(checkpoint),
              "source": {"videos": [str(v) for v in videos], "cache": str(cache_dir), "mode": mode,
                         "frames_per_segment": settings.frames_per_segment, "visual_weights": settings.visual_weights},
              "failed": [str(e.path) for e in entries if e.status == "failed"]}
    files, n_videos, n_events = write_predictions(chunks(), out, header, overwrite,
                                                  extra=lambda row: {"path": paths[row]}, extra_columns=("path",),
                                                  command="localize")
    if html_out is not None:
        note = (f"checkpoint {checkpoint}; {mode} mode; {settings.frames_per_segment} frames per segment; "
                f"segment t covers [t, t + 1) s; thumbnails: each second's sampled frame nearest its middle; bars: consecutive segments of one most probable event class; "
                f"rows below: each segment's probability of every class that reaches 0.1 somewhere")
        failed = [(str(e.path), e.message) for e in entries if e.status == "failed"]
        write_text_atomic(html_out, timeline_page(pages, note, failed=failed))
        files.append(html_out)
    if len(done) < len(entries):
        warnings.warn(f"{len(entries) - len(done)} of {len(entries)} videos failed and are not in {out}")
    return {"files": files, "videos": n_videos, "events": n_events, "failed": len(entries) - len(done)}
