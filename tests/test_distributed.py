"""Data-parallel training: batch shards, the collectives of a 2-process gloo group (metric
agreement across ranks, rank-0-only side effects), `train --nproc 2` end to end, and K=2 training
matching K=1 training at the same global batch and seed."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from avel_dgl import distributed, engine, graph
from avel_dgl.config import get_preset, replace
from avel_dgl.data.dataset import load_split
from avel_dgl.errors import AvelError
from avel_dgl.nn.dpnet import build
from avel_dgl.train import make_optimizer, make_scheduler
from helpers import CPU, run_ranks

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.width": 16, "model.blocks": 1, "model.dropout": 0.0, "model.input_dropout": 0.0,
        "model.classifier_dropout": 0.0, "train.epochs": 2, "train.batch_size": 35, "train.replicate": False}
TINY_OPTIONS = ["--width", "16", "--blocks", "1", "--dropout", "0", "--input-dropout", "0", "--classifier-dropout", "0",
                "--batch-size", "35", "--no-replicate", "--quiet"]  # and --epochs
# K=2 against K=1 (same global batch and seed, dropout off): the largest parameter difference
# allowed after 2 epochs. Only the order of float additions differs; 8.7e-7 was measured.
PARAM_TOLERANCE = 1e-4


@pytest.mark.parametrize("n,batch_size,world", [(96, 35, 2), (96, 32, 3), (10, 4, 3), (97, 32, 2), (7, 7, 1)])
def test_shard_gives_every_video_once_and_scales_to_the_global_mean(n, batch_size, world):
    global_batches = list(torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(batch_size))
    shares = [distributed.shard(global_batches, r, world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1  # every rank takes the same number of steps
    seen = torch.cat([index for s in shares for index, _ in s])
    assert sorted(seen.tolist()) == list(range(n))
    for step in zip(*shares):
        sizes = [len(index) for index, _ in step]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        # mean over ranks of scale * (mean over the share) == mean over the global batch
        assert sum(scale for _, scale in step) == pytest.approx(world)
        assert all(scale == pytest.approx(len(i) * world / sum(sizes)) for i, scale in step)


def test_a_last_batch_smaller_than_the_ranks_joins_the_one_before():
    batches = list(torch.arange(11).split(5))  # 5, 5, 1
    assert [len(i) for i, _ in distributed.shard(batches, 0, 2)] == [3, 3]  # of 5 and 6
    assert [len(i) for i, _ in distributed.shard(batches, 0, 1)] == [5, 5, 1]  # one process: as is
    with pytest.raises(AvelError, match="train.batch_size: each of the 3 processes needs at least one video"):
        distributed.shard(list(torch.arange(8).split(2)), 0, 3)


def test_steps_per_epoch_counts_the_shards(monkeypatch):
    assert distributed.steps_per_epoch(96, 32) == 3
    assert distributed.steps_per_epoch(97, 32) == 4
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.steps_per_epoch(97, 32) == 3  # the 1-video batch joins the third


def _refuse() -> None:
    raise AvelError("--out: rank 0 cannot write")


def _worker(rank: int, world: int, port: int, data_dir: Path, out_dir: Path) -> None:
    """One rank of a 2-process gloo group, joined as under torchrun: exercises the collectives
    and saves what it saw."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    with distributed.process_group("cpu"):
        _collectives(rank, data_dir, out_dir)


def _collectives(rank: int, data_dir: Path, out_dir: Path) -> None:
    assert dist.get_backend() == "gloo"
    seen = {"rows": distributed.shard_rows(7)}
    seen["gathered"] = distributed.gather_rows(seen["rows"] * 10, 7)
    seen["sum"] = distributed.all_reduce_sum(torch.tensor([rank + 1.0]))
    torch.manual_seed(0)  # the same model on every rank
    model = build(replace(get_preset("small"), **TINY), graph.DEFAULT_KERNEL)
    out = engine.evaluate(model, load_split(data_dir, "val"), batch_size=5)
    seen["acc"], seen["pred"] = out["acc"], out["pred"]
    distributed.main_only(Path.write_text, out_dir / f"written_by_rank{rank}", "x")
    try:
        distributed.main_only(_refuse)
    except AvelError as e:
        seen["error"] = str(e)
    order = []
    try:
        with distributed.main_first():  # rank 0 runs the block first; its user error stops every rank
            order.append(rank)
            if rank == 0:
                raise AvelError("--data: rank 0 cannot read it")
    except AvelError as e:
        seen["first"] = (order, str(e))
    # A NaN loss on rank 1 alone stops both ranks at the same step (rank 0 would otherwise wait
    # in DDP's all-reduce for a rank that has left).
    config = replace(get_preset("small"), **TINY)
    train = load_split(data_dir, "train").subset(torch.arange(8))
    if rank == 1:
        train.audio[:] = float("nan")
    optimizer = make_optimizer(model, config)
    try:
        engine.train_one_epoch(distributed.wrap(model), train, optimizer, make_scheduler(optimizer, config, 1),
                               config.train, torch.Generator().manual_seed(0))
    except engine.NonFiniteLoss as e:
        seen["nan"] = (e.step, math.isnan(e.value))
    # The CLI in a joined group: a user error met by every rank is printed by rank 0 alone.
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["train", "--data", str(data_dir), "--out", str(out_dir / "taken"),
                                       "--epochs", "2", *TINY_OPTIONS])
    seen["cli"] = (result.exit_code, [line for line in result.output.splitlines() if "error" in line])
    torch.save(seen, out_dir / f"rank{rank}.pt")


def test_two_ranks_agree_on_metrics_and_only_rank0_writes_and_prints(ave_dir, tmp_path):
    # The single-process reference first (it also builds the pooled cache the ranks read).
    torch.manual_seed(0)
    single = engine.evaluate(build(replace(get_preset("small"), **TINY), graph.DEFAULT_KERNEL), load_split(ave_dir, "val"),
                             5)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")  # a run folder: --out refuses it
    run_ranks(_worker, (ave_dir, tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["rows"].tolist() == [0, 2, 4, 6] and ranks[1]["rows"].tolist() == [1, 3, 5]
    for seen in ranks:
        assert seen["gathered"].tolist() == [0, 10, 20, 30, 40, 50, 60]
        assert seen["sum"].item() == 3.0
        assert seen["error"] == "--out: rank 0 cannot write"  # raised on rank 1 too: nobody waits
        assert seen["nan"] == (1, True)
    assert ranks[0]["first"] == ([0], "--data: rank 0 cannot read it")
    assert ranks[1]["first"] == ([], "--data: rank 0 cannot read it")  # rank 1's block never ran
    # Each rank evaluated half of the rows; both report the metrics of all of them, and the
    # same numbers a single process gets.
    for seen in ranks:
        assert seen["acc"] == single["acc"]
        assert torch.equal(seen["pred"], single["pred"])
    assert sorted(p.name for p in tmp_path.glob("written_by_*")) == ["written_by_rank0"]
    taken = tmp_path / "taken"
    assert ranks[0]["cli"] == (2, [f"avel-dgl: error: --out: {taken} already holds a run; continue it with "
                                   f"--resume {taken}, replace it with --overwrite, or choose another folder"])
    assert ranks[1]["cli"] == (2, [])


def _cli(*args: str, **environ: str) -> subprocess.CompletedProcess:
    """`python -m cli.main ARGS` from the repository, with `environ` added to the environment."""
    env = {**os.environ, **environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)



@pytest.fixture(scope="module")
def two_process_run(ave_dir, tmp_path_factory):
    """`train --nproc 2` for one epoch, then `train --resume --epochs 2 --nproc 2`: the TINY run."""
    out = tmp_path_factory.mktemp("k2") / "run"
    first = _cli("train", "--data", str(ave_dir), "--out", str(out), "--epochs", "1", *TINY_OPTIONS, "--nproc", "2")
    assert first.returncode == 0, first.stderr
    resumed = _cli("train", "--resume", str(out), "--epochs", "2", "--quiet", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    return out, first, resumed


def test_train_nproc2_end_to_end_writes_once_from_rank0(two_process_run):
    out, *results = two_process_run
    assert sorted(p.name for p in out.iterdir()) == [  # with the 1-epoch run's results, kept by the resume
        "best.pt", "config.json", "last.pt", "metrics.csv", "per_class_c-ave.csv", "per_class_c-ave_1_epochs.csv",
        "per_class_o-ave.csv", "per_class_o-ave_1_epochs.csv", "results.json", "results_1_epochs.json", "runtime.json"]
    assert [int(row["epoch"]) for row in csv.DictReader(open(out / "metrics.csv"))] == [1, 2]
    for result in results:  # rank 0's result line alone; with --quiet no log lines (they go to stderr)
        assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith("best epoch")
        assert result.stderr == ("" if graph.dgl is not None else  # without DGL: rank 0's notice alone
                                 f"avel-dgl: notice: eq 12 runs on the torch kernel: DGL does not import here "
                                 f"({graph.DGL_MISSING})\n")
    runtime = json.loads((out / "runtime.json").read_text())
    assert (runtime["processes"], runtime["backend"], runtime["global_batch"], runtime["per_process_batch"]) == \
        (2, "gloo", 35, 18)
    # last.pt keeps each rank's own random streams (seeded seed + rank) for a faithful resume.
    ranks = torch.load(out / "last.pt")["training"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])


def test_two_processes_with_a_resume_match_one_at_the_same_global_batch_and_seed(two_process_run, ave_dir, tmp_path):
    from avel_dgl.train import train_run

    out2, *_ = two_process_run  # trained 1 epoch, then resumed for the second
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two ranks ran; two threads crawl on a busy 2-core machine
    try:
        train_run(replace(get_preset("small"), **TINY), ave_dir, tmp_path / "k1", CPU, progress=False)
    finally:
        torch.set_num_threads(threads)
    one, two = torch.load(tmp_path / "k1" / "last.pt"), torch.load(out2 / "last.pt")
    worst = max((one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"])
    assert worst <= PARAM_TOLERANCE
    rows1 = list(csv.DictReader(open(tmp_path / "k1" / "metrics.csv")))
    rows2 = list(csv.DictReader(open(out2 / "metrics.csv")))
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1["lr"] == r2["lr"]
        assert float(r1["train_loss"]) == pytest.approx(float(r2["train_loss"]), abs=1e-4)
        assert float(r1["train_acc"]) == pytest.approx(float(r2["train_acc"]), abs=1 / 960)  # one segment


def test_launcher_maps_failed_or_stopped_ranks_to_an_exit_status(monkeypatch):
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    from torch.distributed.launcher import api

    def launcher_raising(error):
        def launcher(config, entrypoint):
            def run(*args):
                raise error
            return run
        return launcher

    def failure(exitcode):
        return ChildFailedError("cli.main", {1: ProcessFailure(1, 1, exitcode, "<N/A>")})

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # launch() would set it for the ranks
    monkeypatch.setattr(api, "elastic_launch", launcher_raising(failure(2)))
    assert distributed.launch(2, ["train"]) == 2  # a user error: the rank has printed it
    monkeypatch.setattr(api, "elastic_launch", launcher_raising(SignalException("got signal: 2", sigval=2)))
    assert distributed.launch(2, ["train"]) == 130  # Ctrl-C: rank 0 has printed how to resume
    monkeypatch.setattr(api, "elastic_launch", launcher_raising(failure(-9)))
    with pytest.raises(AvelError, match=r"--nproc: rank 1 of 2 failed with exit code -9 \(its output is above\)"):
        distributed.launch(2, ["train"])


def test_nproc_launch_passes_the_given_options(monkeypatch, tmp_path):
    from click.core import ParameterSource
    from click.testing import CliRunner

    from cli.main import main
    from cli.train_commands import train

    launched = {}
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: launched.update(nproc=nproc, argv=argv) or 0)
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "3", "--no-link",
            "--replicate", "--overwrite", "--lr", "0.01", "--kernel", "torch", "--cache-dir", str(tmp_path / "c"),
            "--nproc", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert launched["nproc"] == 4 and launched["argv"][0] == "train"
    # What each rank parses equals what the launcher parsed, --nproc aside; options left at their
    # defaults stay unset (a resumed run compares the options given with its config).
    rank = train.make_context("train", launched["argv"][1:])
    given = train.make_context("train", args[1:])
    assert {**given.params, "nproc": None} == rank.params
    sources = {n for n in rank.params if rank.get_parameter_source(n) is not ParameterSource.DEFAULT}
    assert sources == {"data_dir", "out_dir", "epochs", "link", "replicate", "overwrite", "lr", "kernel", "cache_dir"}


@pytest.mark.parametrize("rank", [0, 1])
def test_a_config_warning_comes_from_rank_0_alone(rank, tmp_path):
    """Every rank resolves the same config; one copy of its warnings is enough. Rank 1 still
    reports an error when it is alone (RANK set without a group here: no torchrun needed)."""
    # lr x width 16 > ADAM_STEP_LIMIT: validate warns, then the data folder is missing.
    result = _cli("train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), "--width", "16",
                  "--lr", "1", "--quiet", RANK=str(rank))
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and lines[-1].endswith(
        "audio_feature.h5: file not found (expected an HDF5 file with key 'avadataset' of shape (N, 10, 128))")
    warned = [line for line in lines if line.startswith("avel-dgl: warning: --lr: 1 at --width 16")]
    assert len(warned) == (1 if rank == 0 else 0), result.stderr
