"""Using a trained model: `predict` (events, probabilities, streaming, new feature files),
`report` (HTML + PNGs) and `fam` (feature activation maps), on a tiny run trained once."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from avel_dgl import engine, graph
from avel_dgl.checkpoint import save_checkpoint
from avel_dgl.engine import load_model
from avel_dgl.config import get_preset, replace
from avel_dgl.data.ave import read_order
from avel_dgl.data.cache import read_visual_maps
from avel_dgl.data.dataset import load_split
from avel_dgl.errors import AvelError
from avel_dgl.fam import activation_maps, first_rgct, polymorph_names, query_fields
from avel_dgl.format import BACKGROUND, CLASS_NAMES
from avel_dgl.metrics import confusion_matrix
from avel_dgl.nn.dpnet import build
from avel_dgl.predict import data_folder_source, events_from_probs, predict_probs, segment_runs
from avel_dgl.report import SplitPredictions, build_report, sample_videos
from avel_dgl.train import train_run
from cli.main import main
from helpers import CPU

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(ave_dir, tmp_path_factory) -> Path:
    """A tiny DPNet trained for 2 epochs: enough to have every file of a run folder."""
    config = replace(get_preset("small"), **{"train.epochs": 2, "model.width": 16, "model.blocks": 1})
    out = tmp_path_factory.mktemp("run")
    train_run(config, ave_dir, out, CPU, overwrite=True, progress=False)
    return out


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def check_user_error(result, *fragments):
    """Exit 2, one line on stderr, no traceback, naming what is wrong."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avel-dgl: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- intervals --------------------------------------------------------------

def hand_made_probs(classes: list[int], peak: list[float]) -> np.ndarray:
    """(T, 29) probabilities: segment t gives `peak[t]` to classes[t], the rest spread evenly."""
    probs = np.zeros((len(classes), 29))
    for t, (c, p) in enumerate(zip(classes, peak)):
        probs[t] = (1 - p) / 28
        probs[t, c] = p
    return probs


def test_events_merge_consecutive_segments_of_one_class():
    bg = BACKGROUND
    classes = [3, 3, bg, 5, 5, 5, 3, bg, 7, 7]
    peak = [0.9, 0.5, 0.8, 0.6, 0.7, 0.8, 0.4, 0.9, 0.3, 0.5]
    events = events_from_probs(hand_made_probs(classes, peak))
    assert [(e["class"], e["start"], e["end"]) for e in events] == [(3, 0.0, 2.0), (5, 3.0, 6.0), (3, 6.0, 7.0),
                                                                    (7, 8.0, 10.0)]
    assert [e["name"] for e in events] == [CLASS_NAMES[3], CLASS_NAMES[5], CLASS_NAMES[3], CLASS_NAMES[7]]
    assert [e["confidence"] for e in events] == pytest.approx([0.7, 0.7, 0.4, 0.4])


def test_background_only_video_has_no_events():
    assert events_from_probs(hand_made_probs([BACKGROUND] * 10, [0.9] * 10)) == []
    assert segment_runs([BACKGROUND, 2, BACKGROUND]) == [(2, 1, 2)]


# ---- predict -----------------------------------------------------------------------------------

def test_predict_json_schema_and_consistency(run_dir, ave_dir, tmp_path):
    out = tmp_path / "pred.json"
    result = cli("predict", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--subset", "test",
                 "--out", out, "--batch-size", 5)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["classes"] == list(CLASS_NAMES) and doc["background"] == BACKGROUND
    assert doc["segment_seconds"] == 1.0 and doc["source"] == {"data": str(ave_dir), "split": "test"}
    assert [v["row"] for v in doc["videos"]] == read_order(ave_dir, "test").tolist()
    for video in doc["videos"]:
        probs = np.array(video["segment_probs"])
        assert probs.shape == (10, 29)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
        assert video["segment_classes"] == probs.argmax(1).tolist()
        assert [(e["class"], e["start"], e["end"]) for e in video["events"]] == \
            [(c, float(a), float(b)) for c, a, b in segment_runs(video["segment_classes"])]
        for e in video["events"]:
            assert e["name"] == CLASS_NAMES[e["class"]]
            assert e["confidence"] == pytest.approx(probs[int(e["start"]):int(e["end"]), e["class"]].mean(), abs=1e-5)


def test_predict_streaming_in_chunks_equals_whole_split(run_dir, ave_dir):
    model, config, _ = load_model(run_dir / "best.pt", CPU)
    test = load_split(ave_dir, "test")
    expected = torch.softmax(engine.predict_logits(model, test, 64), -1).numpy()
    chunks = list(predict_probs(model, data_folder_source(ave_dir, "test"), batch_size=5))
    assert [len(rows) for rows, _ in chunks] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate([rows for rows, _ in chunks]), test.rows.numpy())
    np.testing.assert_allclose(np.concatenate([p for _, p in chunks]), expected, atol=1e-6)


def test_predict_csv_writes_events_and_segment_tables(run_dir, ave_dir, tmp_path):
    rows = [7, 3, 11]
    result = cli("predict", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--subset", "7,3,11",
                 "--out", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    result = cli("predict", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--subset", "7,3,11",
                 "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "p.json").read_text())
    with open(tmp_path / "p.csv") as f:
        events = list(csv.DictReader(f))
    assert [(int(e["row"]), int(e["class"]), float(e["start"]), float(e["end"])) for e in events] == \
        [(v["row"], e["class"], e["start"], e["end"]) for v in doc["videos"] for e in v["events"]]
    with open(tmp_path / "p_segments.csv") as f:
        segments = list(csv.DictReader(f))
    assert [(int(s["row"]), int(s["segment"])) for s in segments] == [(r, t) for r in rows for t in range(10)]
    probs = np.array([[float(s[f"p_{c}"]) for c in range(29)] for s in segments])
    np.testing.assert_allclose(probs, np.array([v["segment_probs"] for v in doc["videos"]]).reshape(-1, 29))


def write_features(path: Path, array: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f["avadataset"] = array
    return path


@pytest.mark.parametrize("pooled", [False, True], ids=["maps", "pooled"])
def test_predict_new_feature_files_without_labels(run_dir, ave_dir, tmp_path, pooled):
    """A folder with only two feature files (no labels, no order files) is predicted, and the
    probabilities equal those of the same videos read from the data folder."""
    rows = [5, 0, 9, 2]
    with h5py.File(ave_dir / "audio_feature.h5") as a, h5py.File(ave_dir / "visual_feature.h5") as v:
        audio, maps = a["avadataset"][()][rows], v["avadataset"][()][rows]
    new = tmp_path / "new"
    new.mkdir()
    audio_file = write_features(new / "a.h5", audio)
    visual_file = write_features(new / "v.h5", maps.mean(axis=(2, 3)) if pooled else maps)
    out = tmp_path / "new.json"
    result = cli("predict", "--checkpoint", run_dir / "best.pt", "--audio", audio_file, "--visual", visual_file,
                 "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [v["row"] for v in doc["videos"]] == [0, 1, 2, 3]
    model, _, _ = load_model(run_dir / "best.pt", CPU)
    (_, reference), = predict_probs(model, data_folder_source(ave_dir, np.array(rows)), batch_size=8)
    np.testing.assert_allclose(np.array([v["segment_probs"] for v in doc["videos"]]), reference, atol=2e-6)


def test_predict_rejects_bad_input_without_writing(run_dir, ave_dir, tmp_path):
    ckpt = run_dir / "best.pt"
    bad_visual = write_features(tmp_path / "v.h5", np.zeros((3, 10, 7, 512)))
    audio = write_features(tmp_path / "a.h5", np.zeros((3, 10, 128)))
    out = tmp_path / "p.json"
    check_user_error(cli("predict", "--checkpoint", ckpt, "--audio", audio, "--visual", bad_visual, "--out", out),
                     str(bad_visual), "(N, 10, 7, 7, 512)", "(N, 10, 512)", "(3, 10, 7, 512)")
    short_visual = write_features(tmp_path / "v2.h5", np.zeros((2, 10, 512)))
    check_user_error(cli("predict", "--checkpoint", ckpt, "--audio", audio, "--visual", short_visual, "--out", out),
                     str(short_visual), "expected 3 rows", "found 2")
    nan_audio = np.zeros((3, 10, 128))
    nan_audio[2, 4, 0] = np.nan
    nan_file = write_features(tmp_path / "nan.h5", nan_audio)
    good_visual = write_features(tmp_path / "v3.h5", np.zeros((3, 10, 512)))
    check_user_error(cli("predict", "--checkpoint", ckpt, "--audio", nan_file, "--visual", good_visual,
                         "--out", out, "--batch-size", 2), str(nan_file), "NaN at row 2, segment 4")
    check_user_error(cli("predict", "--checkpoint", ckpt, "--data", ave_dir, "--subset", "1,500", "--out", out),
                     "--subset", "[0, 120)", "500")
    check_user_error(cli("predict", "--checkpoint", ckpt, "--data", ave_dir, "--subset", "tset", "--out", out),
                     "--subset", "tset")
    check_user_error(cli("predict", "--checkpoint", ckpt, "--data", ave_dir, "--out", tmp_path / "p.txt"),
                     "--out", ".json or .csv")
    check_user_error(cli("predict", "--checkpoint", ckpt, "--out", out), "--data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "nan.h5", "v.h5", "v2.h5", "v3.h5"]


def test_run_metrics_record_the_validation_loss_of_each_epoch(run_dir, ave_dir):
    """The report's validation loss curve: metrics.csv's val_loss of the last epoch is the SEL loss
    of last.pt on the validation split."""
    import pandas as pd

    metrics = pd.read_csv(run_dir / "metrics.csv")
    model, config, _ = load_model(run_dir / "last.pt", CPU)
    val = load_split(ave_dir, "val")
    loss = engine.sel_loss(engine.predict_logits(model, val, 64), val.segment_labels).item()
    assert metrics["val_loss"].iloc[-1] == pytest.approx(loss, abs=1e-5)


# ---- report ------------------------------------------------------------------------------------

class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.open_sections = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self.open_sections += tag == "section"

    def handle_endtag(self, tag):
        self.open_sections -= tag == "section"


def test_report_writes_html_with_embedded_pngs(run_dir, tmp_path):
    out = tmp_path / "report"
    result = cli("report", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    parser = _Images()
    parser.feed(page)
    assert parser.open_sections == 0
    files = sorted(p.name for p in out.glob("*.png"))
    assert files == ["confusion_c-ave.png", "confusion_o-ave.png", "curves.png", "per_class.png", "timelines.png"]
    embedded = [base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in parser.sources]
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert sorted(embedded) == sorted((out / name).read_bytes() for name in files)  # the same images, self-contained
    assert all(data.startswith(PNG_SIGNATURE) for data in embedded)
    results = json.loads((run_dir / "results.json").read_text())
    assert f"<th>test acc o-ave</th><td>{results['test_acc_o-ave']:.4f}</td>" in page
    assert f"<th>best epoch</th><td>{results['best_epoch']}</td>" in page


def test_report_explains_missing_parts_and_takes_data_option(run_dir, ave_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*"))
    results = json.loads((copy / "results.json").read_text())
    del results["data"]
    (copy / "results.json").write_text(json.dumps(results))
    (copy / "results.json").rename(copy / "saved.json")  # an unfinished run: the data folder of last.pt
    path, notes = build_report(copy, CPU)
    assert (path.parent / "timelines.png").is_file() and [n for n in notes if "data" in n] == []
    assert len(notes) == len(set(notes))  # each note once (it used to be printed twice)
    (copy / "saved.json").rename(copy / "results.json")
    shutil.rmtree(path.parent)
    (copy / "last.pt").rename(copy / "saved.pt")  # neither records the data folder
    path, notes = build_report(copy, CPU)
    assert [n for n in notes if "pass --data" in n] == ["not made: the data folder is unknown (the run records none): "
                                                       "pass --data DIR (and --overwrite)."]
    assert "pass --data" in path.read_text() and not (path.parent / "timelines.png").exists()
    (copy / "results.json").write_text(json.dumps({**results, "test_acc_o-ave": 0.01}))
    path, notes = build_report(copy, CPU, data_dir=ave_dir, overwrite=True)  # replaces the first report
    assert (path.parent / "timelines.png").is_file()
    assert len(notes) == 1 and "O-AVE" in notes[0] and "results.json records 0.0100" in notes[0]
    (copy / "metrics.csv").unlink()
    with pytest.raises(AvelError, match="metrics.csv: not found"):
        build_report(copy, CPU)


def test_sample_videos_picks_best_worst_typical():
    labels = np.full((5, 10), BACKGROUND)
    correct = [10, 2, 6, 9, 5]  # correct segments per video
    probs = np.full((5, 10, 29), 0.01)
    for i, k in enumerate(correct):
        probs[i, :k, BACKGROUND] = 0.9
        probs[i, k:, 0] = 0.9
    p = SplitPredictions("o-ave", np.arange(5), probs, labels)
    assert sample_videos(p, 1) == [("best", 0), ("worst", 1), ("typical", 2)]


def test_confusion_matrix_counts_true_by_predicted():
    target = torch.tensor([[0, 0, 28, 5]])
    pred = torch.tensor([[0, 5, 28, 5]])
    m = confusion_matrix(pred, target)
    assert m.shape == (29, 29) and m.sum() == 4
    assert (m[0, 0], m[0, 5], m[28, 28], m[5, 5]) == (1, 1, 1, 1)


# ---- feature activation maps -----------------------------------------------------------------

def test_fam_cli_writes_png(run_dir, ave_dir, tmp_path):
    import matplotlib.image

    out = tmp_path / "fam.png"
    result = cli("fam", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--video", 4, "--segments", "1,8",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert "segments 1, 8" in result.output
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(out).ndim == 3
    check_user_error(cli("fam", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--video", 4,
                         "--segments", "3,10", "--out", tmp_path / "x.png"), "--segments", "10")
    check_user_error(cli("fam", "--checkpoint", run_dir / "best.pt", "--data", ave_dir, "--video", 120,
                         "--out", tmp_path / "x.png"), "--video", "[0, 120)", "120")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fam.png"]


def test_fam_queries_average_to_the_models_own_query(run_dir, ave_dir):
    """The visual node's 7x7 query fields average to the relational polymorphs the first RGCT
    computes from the pooled features in a forward pass (captured with a hook); the audio node's
    fields average to its query projections of the same pooled visual input."""
    model, _, _ = load_model(run_dir / "best.pt", CPU)
    rgct = first_rgct(model)
    captured = []
    hook = rgct.query[graph.VISUAL].register_forward_hook(lambda module, inputs, output: captured.append(output))
    row = 3
    maps = torch.from_numpy(read_visual_maps(ave_dir, [row]))
    pooled = maps.double().mean(dim=(2, 3)).float()  # (1, 10, 512)
    with h5py.File(ave_dir / "audio_feature.h5") as f:
        audio = torch.from_numpy(f["avadataset"][row:row + 1].astype(np.float32))
    with torch.no_grad():
        model(graph.batch_graph(1), audio, pooled)
        audio_queries = rgct.query[graph.AUDIO](model.visual_norm(pooled[0]))
    hook.remove()
    fields = query_fields(model, maps[0])  # (10, 6, 7, 7, d)
    torch.testing.assert_close(fields.mean(dim=(2, 3))[:, 3:], captured[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fields.mean(dim=(2, 3))[:, :3], audio_queries, atol=1e-4, rtol=1e-4)
    fams = activation_maps(model, maps[0, [2, 5]])
    assert fams.shape == (2, 6, 7, 7)
    torch.testing.assert_close(fams, fields[[2, 5]].amax(-1))
    assert [name for _, name in polymorph_names()] == ["audio_forward", "audio_backward", "visual_to_audio",
                                                      "visual_forward", "visual_backward", "audio_to_visual"]


def test_fam_rejects_a_network_without_a_first_rgct(tmp_path):
    config = replace(get_preset("small"), **{"model.variant": "bilstm", "model.width": 8})
    save_checkpoint(tmp_path / "lstm.pt", build(config, graph.DEFAULT_KERNEL), config)
    model, _, _ = load_model(tmp_path / "lstm.pt", CPU)
    with pytest.raises(AvelError, match="first layer is an RGCT"):
        first_rgct(model)


def test_read_visual_maps_keeps_the_order_asked_for(ave_dir):
    with h5py.File(ave_dir / "visual_feature.h5") as f:
        expected = f["avadataset"][[1, 4, 6]]
    got = read_visual_maps(ave_dir, [6, 1, 4, 6])
    assert got.dtype == np.float32 and got.shape == (4, 10, 7, 7, 512)
    np.testing.assert_allclose(got, expected[[2, 0, 1, 2]].astype(np.float32))


def test_class_colours_are_far_apart_and_text_contrasts():
    from matplotlib.colors import to_rgb

    from avel_dgl.report import CLASS_COLOURS, RIGHT, WRONG, text_colour, to_lab

    lab = to_lab(np.array([to_rgb(c) for c in CLASS_COLOURS]))  # CIELAB: distance as eyes see it
    gaps = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(len(lab)) * 999
    # Measured 29.9 (Cat vs Mandolin). Chosen by RGB distance they were 11.7 apart (Bark vs Baby cry),
    # Rodents 16.0 from the green 'right' strip; about 10 and less reads as one colour.
    assert gaps.min() > 25
    for strip in (RIGHT, WRONG):  # measured 32.4 and 34.9
        assert np.linalg.norm(lab[:-1] - to_lab(to_rgb(strip)), axis=-1).min() > 25
    assert np.abs(to_lab(np.array([1.0, 1.0, 1.0])) - [100, 0, 0]).max() < 0.1  # the white point
    assert text_colour("#222222") == "white" and text_colour("#eeeeee") == "black"


@pytest.mark.parametrize("name, confidence, seconds, text", [
    ("Ukulele", 0.8, 1, "Ukulele\n0.80"),  # was 'Ukule… 0.80': the number goes below instead
    ("Bark", 0.8, 1, "Bark 0.80"),
    ("Ukulele", None, 1, "Ukulele"),
    ("Fixed-wing aircraft", 0.5, 1, "Fixed-wing\u2026\n0.50"),  # too long even alone: shortened
    ("Fixed-wing aircraft", 0.5, 3, "Fixed-wing aircraft 0.50"),
])
def test_timeline_labels_keep_whole_names_that_fit(name, confidence, seconds, text):
    from avel_dgl.report import timeline_label

    assert timeline_label(name, confidence, seconds) == text


def test_report_marks_wrong_segments_and_captions_say_what_figures_show(run_dir, ave_dir, tmp_path):
    from matplotlib.colors import to_rgba

    from avel_dgl.report import RIGHT, WRONG, SplitPredictions, timelines_figure

    labels = np.full((1, 10), BACKGROUND)
    labels[0, 2:6] = 24  # Toilet flush
    probs = np.full((1, 10, 29), 0.01)
    probs[0, np.arange(10), labels[0]] = 0.9
    probs[0, 4:6, 24], probs[0, 4:6, 10] = 0.01, 0.9  # two segments predicted Frying (food)
    fig = timelines_figure(SplitPredictions("o-ave", np.array([7]), probs, labels), [("worst", 0)])
    marks = [tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections]
    assert marks.count(to_rgba(WRONG)) == 2 and marks.count(to_rgba(RIGHT)) == 8
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report*"))
    page = build_report(copy, CPU, data_dir=ave_dir)[0].read_text()
    captions = re.findall(r"<figcaption>(.*?) <span class='file'>", page)
    assert len(captions) == 5 and all(len(c) > 40 and not c.endswith(".png") for c in captions)
