"""A training run: data, model, optimizer and schedule, the epoch loop, validation-selected
checkpoints, resuming an interrupted run bit for bit, and the final test accuracy on O-AVE and
C-AVE.

A run has one shape, `Run`: `Run.start` (a new run folder) or `Run.resume` (an interrupted one),
then `run.fit(progress)` (the remaining epochs) and `run.finish()` (test best.pt, results.json).
`train_run` and `resume_run` do all three under the signal handlers. The process's device and
eq 12 kernel come in as a runtime.Runtime, made by the caller.

The run folder's files (config.json, runtime.json, metrics.csv, best.pt, last.pt, results.json,
per_class_<set>.csv, ...) are named by run_folder.RunFolder, which describes each; under
torch.distributed, rank 0 alone writes them.

Faults (docs/RELIABILITY.md lists each guarantee and the test that proves it):
- Every file is written atomically (outputs.write_atomic).
- Resume granularity is one epoch. last.pt holds the whole state after its epoch (`Run.training_state`),
  and is written once before the first step too (epoch 0), so every run folder can be resumed.
  A resumed run repeats the interrupted epoch from its start and gives the same per-epoch metrics
  and final weights as an uninterrupted one, bit for bit on CPU (same machine, thread count and
  library versions).
- End of an epoch (`Run.end_epoch`) writes best.pt (if improved), then last.pt, then metrics.csv,
  with SIGINT/SIGTERM held until all three are done. If the process dies between best.pt and
  last.pt, the resumed run repeats that epoch and rewrites the same best.pt.
- SIGINT/SIGTERM at any other moment abandon the step in progress: the run stops with the message
  `... continue with: avel-dgl train --resume RUN_DIR` and exit code 130/143.
- A non-finite loss or non-finite weights stop the run before anything of that epoch is written.

Data-parallel runs (docs/DISTRIBUTED.md): every rank builds the same run and runs the same loop;
rank 0 alone writes files, and last.pt also keeps each rank's own random streams, so a resumed
run with the same process count continues as an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import random
import shutil
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from avel_dgl import distributed, engine, graph, interrupt
from avel_dgl.checkpoint import checkpoint_config, load_weights, read_checkpoint, save_checkpoint
from avel_dgl.outputs import OwnedFolder, check_owned_folder, write_failure, write_text_atomic
from avel_dgl.config import Config, differences, flatten, replace, validate
from avel_dgl.data.dataset import SplitData, load_noisy, load_split, skipped_label_sets, test_label_sets
from avel_dgl.errors import AvelError, ConfigError, Interrupted
from avel_dgl.format import LABEL_SETS
from avel_dgl.nn.dpnet import build
from avel_dgl.run_folder import RunFolder
from avel_dgl.runtime import Runtime

log = logging.getLogger(__name__)

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_acc", "val_loss", "seconds"]
TIMING_FIELDS = ("seconds",)  # the only columns that differ between two runs of one config


def set_seed(seed: int) -> None:
    """Fix python, numpy, torch and DGL randomness."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    graph.seed_dgl(seed)


def lr_multiplier(epoch: float, cycle_epochs: int, floors: tuple[tuple[int, float], ...]) -> float:
    """Cosine annealing with warm restarts: within each cycle the multiplier falls from 1 to the
    floor in force (the last (start_epoch, floor) with start_epoch <= epoch), then restarts."""
    floor = [f for start, f in floors if start <= epoch][-1]
    phase = (epoch % cycle_epochs) / cycle_epochs
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * phase))


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    t = config.train
    params = model.parameters()
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True)
    raise ConfigError("train.optimizer", f"expected one of adam, adamw, sgd, found '{t.optimizer}'")


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int):
    t = config.train
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step / steps_per_epoch, t.cycle_epochs, t.lr_floors))


def training_set(config: Config, data_dir: Path) -> SplitData:
    """SEL: the train split. WSEL: the train split plus the background-only noisy videos (their
    video label is background), as in AVEL's weakly supervised setting."""
    train = load_split(data_dir, "train")
    if config.train.task == "wsel":
        train = SplitData.concat([train, load_noisy(data_dir)])
    return train


def check_test_split(data_dir: Path) -> None:
    """Read the test split with every label set it has, as `finish` will after the last epoch, so
    that bad test rows (NaN/Inf features, broken labels) fail in seconds, before the first step,
    whatever the run's length. Without the optional right_labels.h5, C-AVE is skipped: said here,
    recorded in results.json."""
    for label_set in test_label_sets(data_dir):
        load_split(data_dir, "test", label_set)
    for label_set, why in skipped_label_sets(data_dir).items():
        log.info("%s test accuracy will be skipped: %s", label_set.upper(), why)


# ---------------------------------------------------------------------------------------------
# Helpers of a run: random streams, data checksums, the metrics file, the run folder


def rng_state() -> dict:
    """Python, numpy and torch generator states, as tensors and plain values (no pickled objects)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_seed(seed: int, epoch: int) -> int:
    """DGL keeps no readable RNG state, so its generator is reseeded from (seed, epoch) at the
    start of every epoch, fresh or resumed. (No DGL call in training draws from it today.)"""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)  # DGL takes an int32


def data_fingerprint(data: SplitData) -> int:
    """A checksum of a split's rows, features and labels: resuming on other data is refused."""
    crc = 0
    for tensor in (data.rows, data.audio, data.visual, data.segment_labels, data.video_labels):
        crc = zlib.crc32(tensor.numpy().tobytes(), crc)
    return crc


def metrics_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def runtime_info(runtime: Runtime, batch_size: int) -> dict:
    """Where and how a run computes: logged when it starts and kept in runtime.json."""
    k = runtime.world_size
    return {"device": str(runtime.device), "kernel": runtime.kernel, "processes": k,
            "backend": distributed.backend(), "global_batch": batch_size, "per_process_batch": -(-batch_size // k),
            "torch": torch.__version__, "dgl": graph.dgl.__version__ if graph.dgl is not None else None}


# A run folder as an owned folder: RunFolder names its marker and every name --overwrite may delete.
RUN_FOLDER = OwnedFolder("run", RunFolder.MARKER, RunFolder.owns, go_on="continue it with --resume {path}, ")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the run folder. An existing run is replaced only with --overwrite, a run folder
    holding files avel-dgl did not write and a non-empty folder that is not a run never
    (`outputs.check_owned_folder`; --overwrite deletes the folder, and a user's file there must survive)."""
    if check_owned_folder(out_dir, RUN_FOLDER, overwrite):
        try:
            shutil.rmtree(out_dir)
        except OSError as e:
            raise AvelError(f"--overwrite: cannot delete {out_dir} ({e.strerror})") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AvelError(f"--out: {write_failure(out_dir, e, 'nothing was written')}") from None


def check_run_config(config: Config, run_dir: Path, last: Path, expect: dict) -> None:
    """last.pt must belong to this run (its config.json), and options given on the command line
    must agree with the run's config. Both name the first differing field."""
    config_json = RunFolder(run_dir).config
    try:
        recorded = Config.from_dict(json.loads(config_json.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AvelError(f"{config_json}: not a readable run config ({e})") from None
    # train.epochs may differ: --epochs extends a run, and last.pt is written before config.json.
    diffs = [d for d in differences(config, recorded) if d[0] != "train.epochs"]
    if diffs:
        key, mine, theirs = diffs[0]
        raise AvelError(f"{last}: made with {key}={mine}, but {config_json} has {key}={theirs} "
                        f"(a checkpoint of another run?)")
    flat = flatten(config)
    for key, value in expect.items():
        if flat[key] != value:
            raise AvelError(f"--resume: the run in {run_dir} has {key}={flat[key]}, found {value} on the command "
                            f"line (a resumed run keeps its config; only --epochs may change)")


@contextlib.contextmanager
def stop_message(run_dir: Path | None, run: Run | None = None) -> Iterator[None]:
    """A signal's Interrupted leaves the block as the message of a stopped run: what is on disk
    (`run_dir`'s last.pt, holding `run`'s epoch or, without a run in memory, unchanged) and how
    to continue."""
    try:
        yield
    except Interrupted as e:
        last = RunFolder(run_dir).last if run_dir is not None else None
        if last is None or not last.exists():
            raise interrupt.stopped(e.signum, "train", "before training started, nothing was written") from None
        held = f"holds epoch {run.epoch} of {run.config.train.epochs}" if run is not None else "is unchanged"
        raise interrupt.stopped(e.signum, "train", f"{last} {held}; continue with: avel-dgl train --resume "
                                                   f"{run_dir}") from None


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """A run in memory: its data, the objects `training_state` saves, and its progress.

    Made by `start` (new) or `resume` (from last.pt); `fit` trains the remaining epochs, `finish`
    tests best.pt. Each of them says, when a signal stops it, what is on disk and how to continue
    (the caller installs the handlers: interrupt.interruptible)."""

    config: Config
    data_dir: Path
    out_dir: Path
    runtime: Runtime
    train: SplitData
    val: SplitData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # shuffles each epoch's batches
    replicas: object | None  # the replica sampler (SEL with replicate), see data/subevents.py
    subevents: str | None  # the sub-event database file given for replicate (None: the default)
    fingerprints: dict  # {"train": crc, "val": crc} of the data, see `data_fingerprint`
    epoch: int = 0  # epochs completed and saved in last.pt
    best_acc: float = -1.0
    best_epoch: int = -1
    rows: list[dict] = field(default_factory=list)  # metrics.csv rows of epochs 1..epoch
    net: torch.nn.Module | None = None  # what trains: DDP around `model` under torch.distributed; None: `model`

    def __post_init__(self):
        if self.net is None:
            self.net = self.model

    @property
    def files(self) -> RunFolder:
        """The run folder's files, by name (out_dir)."""
        return RunFolder(self.out_dir)

    @classmethod
    def _build(cls, config: Config, data_dir: Path, out_dir: Path, runtime: Runtime,
               subevents: Path | None = None) -> Run:
        """Data, model, optimizer, schedule and samplers of a run, before any file is written (so a
        bad option, data file or sub-event database leaves nothing behind). Seeds first: model
        initialisation and the replica sampler draw from the seeded generators. `subevents`: the
        sub-event database file for replicate (default: see data/subevents.replica_fn). Under
        torchrun (inside `distributed.process_group`) this builds one rank of a data-parallel run."""
        validate(config)
        t = config.train
        log.info("device %(device)s, %(processes)d process(es) (backend %(backend)s), global batch %(global_batch)d "
                 "(%(per_process_batch)d per process)", runtime_info(runtime, t.batch_size))
        log.info("preset %s, task %s, variant %s: replicate %s, link %s", config.preset, t.task,
                 config.model.variant, "on" if t.replicate else "off", "on" if t.link else "off")
        set_seed(t.seed)
        with distributed.main_first():  # rank 0 alone builds the pooled visual cache, if missing
            train, val = training_set(config, data_dir), load_split(data_dir, "val")  # checked, non-empty
            check_test_split(data_dir)
        model = build(config, runtime.kernel)
        if t.input_norm == "standardize":
            model.audio_norm.set_stats(train.audio)
            model.visual_norm.set_stats(train.visual)
        elif t.input_norm != "none":
            raise ConfigError("train.input_norm", f"expected none or standardize, found '{t.input_norm}'")
        model.to(runtime.device)
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, distributed.steps_per_epoch(len(train), t.batch_size))
        replicas = None
        if t.replicate:
            from avel_dgl.data.subevents import replica_fn

            # Each rank draws its own replicas, reproducibly; rank 0's are a one-process run's. Where
            # the sub-event database came from is a log line, shown as the run's others are.
            replicas = replica_fn(train, data_dir, seed=t.seed + runtime.rank, subevents=subevents, note=log.info)
        if runtime.rank > 0:
            set_seed(t.seed + runtime.rank)  # own dropout masks; the model was built identically
        generator = torch.Generator().manual_seed(t.seed)  # the same shuffled order on every rank
        fingerprints = {"train": data_fingerprint(train), "val": data_fingerprint(val)}
        return cls(config=config, data_dir=data_dir, out_dir=out_dir, runtime=runtime, train=train, val=val,
                   model=model, optimizer=optimizer, scheduler=scheduler, generator=generator, replicas=replicas,
                   subevents=None if subevents is None else str(Path(subevents).resolve()),
                   fingerprints=fingerprints, net=distributed.wrap(model))

    @classmethod
    def start(cls, config: Config, data_dir: str | Path, out_dir: str | Path, runtime: Runtime,
              overwrite: bool = False, subevents: str | Path | None = None) -> Run:
        """A new run: built, then its folder made (replacing a run there only with `overwrite`)
        with config.json, runtime.json and an epoch-0 last.pt, so it can be resumed from the start."""
        out_dir = Path(out_dir)
        with stop_message(None):
            run = cls._build(config, Path(data_dir), out_dir, runtime, subevents)
        with stop_message(out_dir, run), interrupt.deferred():
            distributed.main_only(run._write_start_files, overwrite)
            run.save_last()
        return run

    def _write_start_files(self, overwrite: bool) -> None:
        prepare_out_dir(self.out_dir, overwrite)
        self._write_config_files()

    def _write_config_files(self) -> None:
        write_text_atomic(self.files.config, json.dumps(self.config.to_dict(), indent=2))
        write_text_atomic(self.files.runtime,
                          json.dumps(runtime_info(self.runtime, self.config.train.batch_size), indent=2))

    @classmethod
    def resume(cls, run_dir: str | Path, runtime: Runtime, data_dir: str | Path | None = None,
               epochs: int | None = None, expect: dict | None = None) -> Run:
        """The run in `run_dir` as its last.pt left it (see the module docstring), ready to fit.

        data_dir: defaults to the folder the run was trained on. epochs: train up to this many
        epochs in all (>= those done). expect: {dotted config field: value} given on the command
        line; each must equal the run's own value, since a resumed run keeps its config.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise AvelError(f"--resume: {run_dir} {'is not a folder' if run_dir.exists() else 'not found'}")
        folder = RunFolder(run_dir)
        last = folder.last
        if not last.exists():
            if any(run_dir.iterdir()) and not folder.holds_run():  # --overwrite would refuse it
                raise AvelError(f"--resume: {run_dir} holds no avel-dgl run (no last.pt or config.json); give "
                                f"the folder of a run (train --out RUN_DIR made it)")
            raise AvelError(f"--resume: {run_dir} holds no last.pt, nothing to resume "
                            f"(start again with --out {run_dir} --overwrite)")
        with stop_message(run_dir):
            ckpt = read_checkpoint(last)
            if "training" not in ckpt:
                raise AvelError(f"{last}: holds no training state (a model-only checkpoint); cannot resume")
            config = checkpoint_config(ckpt, last)
            check_run_config(config, run_dir, last, expect or {})
            if epochs is not None:
                if epochs < ckpt["epoch"]:
                    raise ConfigError("train.epochs", f"the run in {run_dir} has already trained "
                                                      f"{ckpt['epoch']} epochs, found {epochs}")
                config = replace(config, **{"train.epochs": epochs})
            recorded = Path(ckpt["training"]["data_dir"])
            if data_dir is None and not recorded.is_dir():
                raise AvelError(f"--resume: the run's data folder {recorded} (recorded in {last}) is not found; if "
                                f"it moved, give its new place with --data")
            run = cls._build(config, Path(data_dir or recorded), run_dir, runtime,
                            ckpt["training"].get("subevents"))
            run.restore(ckpt, last)
        with stop_message(run_dir, run), interrupt.deferred():
            distributed.main_only(run._write_resume_files, ckpt["epoch"])
            run.save_last(ckpt["val_acc"])  # again, so that a new --epochs or --data holds from now on
        return run

    def _write_resume_files(self, epochs_done: int) -> None:
        # Results describe a finished run and finish() writes them again. A finished run trained
        # further (--epochs) would lose them (best.pt may move on), so they are kept under its
        # epoch count; resuming an interrupted or unchanged run only drops the stale copies.
        extending = self.files.results.is_file() and self.config.train.epochs > epochs_done
        for path in self.files.result_files():
            if extending and path.is_file():
                path.replace(RunFolder.kept_copy(path, epochs_done))
            else:
                path.unlink(missing_ok=True)
        if extending:
            log.info("kept the %d-epoch run's results as %s (training on to %d epochs)",
                     epochs_done, RunFolder.kept_copy(self.files.results, epochs_done).name, self.config.train.epochs)
        self._write_config_files()

    def training_state(self) -> dict:
        """Everything besides the weights that the next epoch depends on (stored in last.pt).
        Called on every rank: with several, "ranks" keeps each rank's own random streams."""
        replicas = self.replicas.state_dict() if hasattr(self.replicas, "state_dict") else None
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "generator": self.generator.get_state(), "rng": rng_state(), "replicas": replicas,
                 "best_acc": self.best_acc, "best_epoch": self.best_epoch, "rows": self.rows,
                 "data_dir": str(self.data_dir.resolve()), "data": self.fingerprints,
                 "threads": torch.get_num_threads(), "subevents": self.subevents}
        if self.runtime.world_size > 1:
            state["ranks"] = distributed.all_gather_object({"rng": state["rng"], "replicas": replicas})
        return state

    def restore(self, ckpt: dict, last: Path) -> None:
        """Put a run just built into the state saved in last.pt."""
        state = ckpt["training"]
        for split in ("train", "val"):
            if self.fingerprints[split] != state["data"][split]:
                raise AvelError(f"--data: the {split} split in {self.data_dir} differs from the one the run in "
                                f"{self.out_dir} was trained on (different rows, features or labels)")
        if state["threads"] != torch.get_num_threads() and self.runtime.is_main:
            warnings.warn(f"{last} was written with {state['threads']} torch threads, now {torch.get_num_threads()}: "
                          f"the resumed run may differ from an uninterrupted one in the last bits", stacklevel=2)
        load_weights(self.model, ckpt["model"], last, self.config)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        # This rank's random streams; a rank the saved run did not have keeps its fresh ones.
        ranks = state.get("ranks", [{"rng": state["rng"], "replicas": state["replicas"]}])
        if len(ranks) != self.runtime.world_size and self.runtime.is_main:
            warnings.warn(f"{last} was written by {len(ranks)} process(es), now {self.runtime.world_size}: the "
                          f"same global batches, but the resumed run's dropout and replicas differ from an "
                          f"uninterrupted one's", stacklevel=2)
        if self.runtime.rank < len(ranks):
            own = ranks[self.runtime.rank]
            if own["replicas"] is not None:
                self.replicas.load_state_dict(own["replicas"])
            set_rng_state(own["rng"])
        self.epoch, self.best_acc, self.best_epoch = ckpt["epoch"], state["best_acc"], state["best_epoch"]
        self.rows = list(state["rows"])

    def save_last(self, val_acc: float | None = None) -> None:
        """last.pt with the training state, then metrics.csv (a copy of the rows last.pt holds).
        Called on every rank (the state gathers each rank's streams); rank 0 writes."""
        training = self.training_state()
        distributed.main_only(self._write_last, training, val_acc)

    def _write_last(self, training: dict, val_acc: float | None) -> None:
        save_checkpoint(self.files.last, self.model, self.config, epoch=self.epoch, val_acc=val_acc,
                        training=training)
        write_text_atomic(self.files.metrics, metrics_text(self.rows))

    def end_epoch(self, row: dict, val_acc: float) -> None:
        """Record a finished epoch and write best.pt (if improved), last.pt and metrics.csv, in this
        order, with signals held: self.epoch always names the epoch last.pt holds."""
        with interrupt.deferred():
            self.rows.append(row)
            self.epoch = row["epoch"]
            if val_acc > self.best_acc:  # val_acc is the same on every rank, so is this choice
                self.best_acc, self.best_epoch = val_acc, self.epoch
                distributed.main_only(save_checkpoint, self.files.best, self.model, self.config,
                                      epoch=self.epoch, val_acc=val_acc)
            self.save_last(val_acc)

    def fit(self, progress: bool) -> None:
        """The epoch loop from self.epoch + 1 to config.train.epochs (progress bars on rank 0 only)."""
        t = self.config.train
        # After every check: the CLI holds the log lines until this one (`run_starts`), so that a
        # run refused before prints its error alone.
        log.info("training epochs %d to %d", self.epoch + 1, t.epochs, extra={"run_starts": True})
        progress = progress and self.runtime.is_main
        bar = tqdm(range(self.epoch + 1, t.epochs + 1), initial=self.epoch, total=t.epochs,
                   desc=f"{self.config.model.variant} {t.task}", disable=not progress)
        with stop_message(self.out_dir, self):
            for epoch in bar:
                start = time.perf_counter()
                graph.seed_dgl(epoch_seed(t.seed, epoch))
                lr = self.optimizer.param_groups[0]["lr"]
                try:
                    stats = engine.train_one_epoch(self.net, self.train, self.optimizer, self.scheduler, t,
                                                   self.generator, self.replicas, progress)
                except engine.NonFiniteLoss as e:
                    raise AvelError(f"epoch {epoch} step {e.step}: training loss is {e.value}; stopped. "
                                    f"{self.kept()}") from None
                if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                    raise AvelError(f"epoch {epoch}: weights became NaN or Inf; stopped. {self.kept()}")
                val_stats = engine.evaluate(self.model, self.val, t.batch_size, task=t.task)
                val_acc = val_stats["acc"]
                row = {"epoch": epoch, "lr": f"{lr:.6g}", "train_loss": f"{stats['loss']:.6f}",
                       "train_acc": f"{stats['acc']:.6f}", "val_acc": f"{val_acc:.6f}",
                       "val_loss": f"{val_stats['loss']:.6f}", "seconds": f"{time.perf_counter() - start:.2f}"}
                self.end_epoch(row, val_acc)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", train=f"{stats['acc']:.3f}", val=f"{val_acc:.3f}",
                                best=f"{self.best_acc:.3f}@{self.best_epoch}")

    def kept(self) -> str:
        """What a stopped run leaves intact, for the error message."""
        best = f" and best.pt (epoch {self.best_epoch})" if self.best_epoch > 0 else ""
        return (f"The last good state is in {self.files.last} (epoch {self.epoch}){best}; "
                f"look for NaN or huge input features, or try a lower --lr")

    def finish(self) -> dict:
        """Test best.pt on both label sets and write results.json and the per-class tables. Every
        rank tests its share of the rows of best.pt (read from the shared run folder); rank 0 writes."""
        # The data folder is recorded so `avel-dgl report` can predict on its test split later.
        results = {"seed": self.config.train.seed, "best_epoch": self.best_epoch, "val_acc": self.best_acc,
                   "data": str(self.data_dir.resolve())}
        with stop_message(self.out_dir, self):
            if self.replicas is not None:  # how often Algorithm 1 re-split or copied, summed over every rank's draws
                per_rank = distributed.all_gather_object(dict(self.replicas.counts))
                results["replicas"] = {key: sum(counts[key] for counts in per_rank) for key in per_rank[0]}
            tables = {}
            for label_set in LABEL_SETS:  # best.pt is complete: its writer, main_only, waited for rank 0
                results[f"test_acc_{label_set}"] = None  # skipped: see "skipped"
            for label_set in test_label_sets(self.data_dir):
                out = engine.evaluate_checkpoint(self.files.best, self.data_dir, label_set, self.runtime)
                results[f"test_acc_{label_set}"], tables[label_set] = out["acc"], out["per_class"]
            if skipped := skipped_label_sets(self.data_dir):
                results["skipped"] = skipped
            distributed.main_only(self._write_results, results, tables)
        return results

    def _write_results(self, results: dict, tables: dict) -> None:
        for label_set, table in tables.items():
            write_text_atomic(self.files.per_class(label_set), table.to_csv(index=False))
        write_text_atomic(self.files.results, json.dumps(results, indent=2))


# ---------------------------------------------------------------------------------------------
# Whole runs, as `avel-dgl train` makes them


def train_run(config: Config, data_dir: str | Path, out_dir: str | Path, runtime: Runtime, overwrite: bool = False,
              progress: bool = True, subevents: str | Path | None = None) -> dict:
    """Train a new run to its last epoch and test its best checkpoint (`Run.start`, `fit`,
    `finish`); SIGINT/SIGTERM stop it with a message saying how to continue. Returns results.json's."""
    with interrupt.interruptible():
        run = Run.start(config, data_dir, out_dir, runtime, overwrite, subevents)
        run.fit(progress)
        return run.finish()


def resume_run(run_dir: str | Path, runtime: Runtime, data_dir: str | Path | None = None, epochs: int | None = None,
               expect: dict | None = None, progress: bool = True) -> dict:
    """Continue the run in `run_dir` from its last.pt to its last epoch and test it (`Run.resume`,
    `fit`, `finish`); the options are `Run.resume`'s."""
    with interrupt.interruptible():
        run = Run.resume(run_dir, runtime, data_dir, epochs, expect)
        run.fit(progress)
        return run.finish()
