"""GPU check (issue 26): whether avel-dgl runs and how fast, on a machine with a GPU and whatever
torch it has. Needs only this repository on PYTHONPATH, torch, h5py, click, pandas, tqdm and
matplotlib: no pip install, no DGL (without it eq 12 runs on the torch kernel), no network; PyAV
(and torchvision, for VGG19) only for the extraction row. It generates its own data, then

  (a) the torch kernel on the GPU against the CPU on a linked batch: eq 12 alone, a whole RGCT
      layer and a whole RGAT layer, values and gradients to 1e-5;
  (b) `avel-dgl train --preset small` (SEL) for 3 epochs on 600 synthetic videos with
      `--device cuda`, then `avel-dgl evaluate` of its best checkpoint (which must give the
      run's own test accuracy);
  (c) one epoch of `--preset paper --no-replicate --no-link` and one of `--preset paper` on a
      full-size synthetic set (4143 videos): seconds per epoch and peak GPU memory;
  (d) `extract` with random weights (the published ones need a download): seconds per 10-s clip
      and frames per second, if PyAV is present;

and prints one markdown table (also written to WORK/gpu_check.md). The commands' own output goes
to WORK/gpu_check.log. Meant to take under 8 minutes on one H100. Exit status 1 if a check fails.

    PYTHONPATH=. python benchmarks/gpu_check.py [--work DIR]
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu    # dry mode: small sizes, on the CPU

The dry mode runs every step end to end at small sizes (tests/test_gpu_check.py runs it, so the
script cannot rot); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avel_dgl import graph  # noqa: E402
from avel_dgl.data.synthetic import make_synthetic  # noqa: E402
from avel_dgl.nn.rgat import RGAT  # noqa: E402
from avel_dgl.nn.rgct import RGCT  # noqa: E402

TOLERANCE = 1e-5


@dataclass(frozen=True)
class Sizes:
    videos: int  # (b): the synthetic set `small` trains on
    epochs: int
    full_videos: int  # (c): the full-size set
    model: tuple[str, ...]  # extra train options (the dry mode's tiny model)
    clips: int  # (d): 10-s clips timed (after one warm-up clip)
    clip_seconds: float
    frames_per_segment: int


SIZES = {
    "cuda": Sizes(600, 3, 4143, (), 4, 10.0, 16),
    "cpu": Sizes(100, 1, 100, ("--width", "16", "--blocks", "1", "--batch-size", "48"), 1, 1.0, 1),
}


class Table:
    """The markdown table: one row per check."""

    def __init__(self):
        self.rows, self.failed = [], False

    def add(self, check: str, result: str, seconds: float | None = None, memory: str = "", ok: bool = True):
        self.failed |= not ok
        self.rows.append((check, result if ok else f"FAIL: {result}",
                          "" if seconds is None else f"{seconds:.1f}", memory))

    def markdown(self) -> str:
        lines = ["| check | result | seconds | peak GPU memory |", "|---|---|---|---|"]
        return "\n".join(lines + [f"| {' | '.join(row)} |" for row in self.rows])


def peak_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


# ---- (a) the torch kernel on the device against the CPU ------------------------------------------

def _compare(cpu: list[torch.Tensor], device: list[torch.Tensor]) -> tuple[float, bool]:
    """The largest absolute difference, and whether every pair is within TOLERANCE (absolute and
    relative, as torch.allclose: large gradient sums keep float32's relative precision)."""
    pairs = [(x.detach().cpu(), y.detach().cpu()) for x, y in zip(cpu, device)]
    largest = max(float((x - y).abs().max()) for x, y in pairs)
    return largest, all(torch.allclose(x, y, rtol=TOLERANCE, atol=TOLERANCE) for x, y in pairs)


def _run_on(device: torch.device, make_layer, audio: torch.Tensor, visual: torch.Tensor, g, weights):
    """Outputs and gradients (inputs, then every parameter) of one forward and backward on `device`."""
    a, v = audio.to(device).requires_grad_(), visual.to(device).requires_grad_()
    if make_layer is None:  # eq 12 alone
        means = graph.neighbour_means(g, {graph.AUDIO: a, graph.VISUAL: v}, "torch")
        outputs, params = [means[graph.AUDIO], means[graph.VISUAL]], []
    else:
        layer = make_layer().to(device).eval()  # eval: no dropout, so both devices compute the same
        outputs, params = list(layer(g, a, v)), list(layer.parameters())
    loss = sum((out * w.to(device)[: out.numel()].view_as(out)).sum() for out, w in zip(outputs, weights))
    grads = torch.autograd.grad(loss, [a, v, *params])
    return outputs, list(grads)


def kernel_check(device: torch.device, table: Table) -> None:
    pairs, t, dim = 8, 10, 32
    g = graph.batch_graph(2 * pairs, linked=True, t=t)  # originals then replicas, with link edges
    gen = torch.Generator().manual_seed(0)
    audio, visual = torch.randn(2 * pairs * t, dim, generator=gen), torch.randn(2 * pairs * t, dim, generator=gen)
    weights = [torch.randn(2 * pairs * t * dim * 3, generator=gen) for _ in range(2)]

    def seeded(cls):
        def make():
            torch.manual_seed(0)  # the same parameters on both devices
            return cls(dim, dim, kernel="torch")
        return make

    for name, make_layer in (("eq 12 (neighbour means)", None), ("RGCT layer", seeded(RGCT)),
                             ("RGAT layer", seeded(RGAT))):
        start = time.perf_counter()
        cpu_out, cpu_grads = _run_on(torch.device("cpu"), make_layer, audio, visual, g, weights)
        dev_out, dev_grads = _run_on(device, make_layer, audio, visual, g, weights)
        (values, values_ok), (grads, grads_ok) = _compare(cpu_out, dev_out), _compare(cpu_grads, dev_grads)
        table.add(f"(a) torch kernel, {device.type} vs cpu, linked batch of {pairs} pairs: {name}",
                  f"max abs difference: values {values:.1e}, gradients {grads:.1e} (allclose at {TOLERANCE:g})",
                  time.perf_counter() - start, ok=values_ok and grads_ok)


# ---- (b), (c): the CLI ---------------------------------------------------------------------------

def avel(args: list, log) -> None:
    """`avel-dgl *args` in this process (so its GPU memory is measured here); its output to `log`."""
    from cli.main import main

    with contextlib.redirect_stdout(log):
        try:
            main([str(a) for a in args], prog_name="avel-dgl", standalone_mode=False)
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"avel-dgl {' '.join(map(str, args))}: exit status {e.code} (see {log.name})")


def epoch_seconds(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def train_and_evaluate(work: Path, sizes: Sizes, device: torch.device, table: Table, log) -> None:
    data, run = work / f"synthetic{sizes.videos}", work / "small"
    start = time.perf_counter()
    make_synthetic(data, videos=sizes.videos, seed=0, visual_dtype="float32", overwrite=True)
    reset_peak(device)
    avel(["train", "--task", "sel", "--preset", "small", *sizes.model, "--epochs", sizes.epochs, "--data", data,
          "--out", run, "--device", device.type, "--overwrite", "--quiet"], log)
    results = json.loads((run / "results.json").read_text())
    table.add(f"(b) train --preset small, SEL, {sizes.videos} videos, {sizes.epochs} epochs, --device {device.type}",
              f"best epoch {results['best_epoch']}, val acc {results['val_acc']:.4f}, test acc o-ave "
              f"{results['test_acc_o-ave']:.4f}, c-ave {results['test_acc_c-ave']:.4f}; "
              f"s/epoch {', '.join(f'{s:.1f}' for s in epoch_seconds(run))}",
              time.perf_counter() - start, peak_memory(device))
    start = time.perf_counter()
    avel(["evaluate", "--split", "c-ave", "--checkpoint", run / "best.pt", "--data", data, "--out", work / "eval",
          "--device", device.type, "--overwrite", "--quiet"], log)
    accuracy = json.loads((work / "eval.json").read_text())["accuracy"]
    table.add("(b) evaluate --split c-ave of its best.pt", f"acc {accuracy:.4f} (the run's own: "
              f"{results['test_acc_c-ave']:.4f})", time.perf_counter() - start,
              ok=abs(accuracy - results["test_acc_c-ave"]) < 1e-6)


def paper_epochs(work: Path, sizes: Sizes, device: torch.device, table: Table, log) -> None:
    data = work / f"synthetic{sizes.full_videos}"
    if sizes.full_videos != sizes.videos:  # the dry mode reuses (b)'s set
        start = time.perf_counter()
        make_synthetic(data, videos=sizes.full_videos, seed=0, visual_dtype="float32", overwrite=True)
        table.add(f"(c) make-synthetic, {sizes.full_videos} videos (float32)", "written", time.perf_counter() - start)
    for name, options in (("paper --no-replicate --no-link", ["--no-replicate", "--no-link"]),
                          ("paper (Replicate and Link)", [])):
        run = work / ("paper_plain" if options else "paper_rl")
        reset_peak(device)
        start = time.perf_counter()
        avel(["train", "--preset", "paper", *options, *sizes.model, "--epochs", 1, "--data", data, "--out", run,
              "--device", device.type, "--overwrite", "--quiet"], log)
        table.add(f"(c) train --preset {name}, {sizes.full_videos} videos, 1 epoch",
                  f"{epoch_seconds(run)[0]:.1f} s per epoch (train and validation)", time.perf_counter() - start,
                  peak_memory(device))


# ---- (d) extract ---------------------------------------------------------------------------------

def extract_timing(work: Path, sizes: Sizes, device: torch.device, table: Table) -> None:
    check = f"(d) extract, random weights, {sizes.frames_per_segment} frames per segment"
    try:
        import av  # noqa: F401

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from extract import write_video  # benchmarks/extract.py: a moving 640x360 video and a chirp

        from avel_dgl.video import extract
        settings = extract.Settings(frames_per_segment=sizes.frames_per_segment)
        nets = extract.load_networks(settings, device=device, weights="random")
    except Exception as e:  # PyAV, torchvision or the audio network missing here: the row says so
        table.add(check, f"not run: {type(e).__name__}: {e}")
        return
    clips = [write_video(work / f"clip{i}.mp4", sizes.clip_seconds) for i in range(sizes.clips + 1)]
    extract.extract_video(clips[0], nets, settings)  # warm-up: first-call costs (cuDNN, allocator)
    reset_peak(device)
    start = time.perf_counter()
    frames = sum(extract.extract_video(clip, nets, settings).info.segments * sizes.frames_per_segment
                 for clip in clips[1:])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    table.add(check, f"{seconds / sizes.clips:.2f} s per {sizes.clip_seconds:g}-s clip, {frames / seconds:.1f} "
              f"frames/s ({sizes.clips} clips)", seconds, peak_memory(device))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: the check; cpu: the dry mode at small sizes")
    p.add_argument("--work", type=Path, help="where data and runs go (default: a new temporary folder)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device; use --device cpu for the dry mode", file=sys.stderr)
        return 2
    device, sizes = torch.device(args.device), SIZES[args.device]
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry mode)"
    print(f"gpu_check on {name}: torch {torch.__version__}, DGL "
          f"{graph.dgl.__version__ if graph.dgl is not None else 'absent'}; work in {work}", file=sys.stderr)
    table, total = Table(), time.perf_counter()
    with open(work / "gpu_check.log", "w") as log:
        kernel_check(device, table)
        train_and_evaluate(work, sizes, device, table, log)
        paper_epochs(work, sizes, device, table, log)
    extract_timing(work, sizes, device, table)
    table.add("whole check", f"{name}, torch {torch.__version__}", time.perf_counter() - total)
    text = table.markdown()
    (work / "gpu_check.md").write_text(text + "\n")
    print(text)
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
