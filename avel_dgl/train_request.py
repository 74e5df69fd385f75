"""What one `avel-dgl train` asks for, checked and carried out: a new run (a resolved config, a
data folder, a run folder) or the continuation of an interrupted one (its folder, and the options
given again, which must agree with its config). The command line only collects the options.
"""

from __future__ import annotations

from pathlib import Path

from avel_dgl.config import field_names, resolve_config
from avel_dgl.errors import AvelError
from avel_dgl.runtime import Runtime
from avel_dgl.train import resume_run, train_run


def train_or_resume(runtime: Runtime, *, data_dir: Path | None, out_dir: Path | None, resume_dir: Path | None,
                    overwrite: bool, subevents: Path | None, preset: str, replicate: bool | None,
                    link: bool | None, options: dict, given: set[str], progress: bool) -> dict:
    """Train a new run, or resume `resume_dir`, under `runtime`; the run's results.

    options: the config options by `config.field_names`' short names (None: unset; epochs among
    them), given: the names of the options the user gave (not defaults). A resumed run keeps its
    own config: of the given options, epochs may extend it and the others must match it
    (train.Run.resume says which differ)."""
    if resume_dir is not None:
        if out_dir is not None:
            raise AvelError("--resume: continues a run in its own folder, do not also pass --out")
        if overwrite:
            raise AvelError("--overwrite: cannot be combined with --resume (it would delete the run)")
        if subevents is not None:
            raise AvelError("--subevents: a resumed run keeps the sub-event database it started with")
        options = dict(options)
        epochs = options.pop("epochs")
        names = field_names()
        expect = {names[k]: v for k, v in options.items() if k in given}
        for name, value, key in (("preset", preset, "preset"), ("replicate", replicate, "train.replicate"),
                                 ("link", link, "train.link")):
            if name in given:
                expect[key] = value
        return resume_run(resume_dir, runtime, data_dir, epochs, expect, progress=progress)
    if out_dir is None:
        raise AvelError("train: expected --out RUN_DIR for a new run, or --resume RUN_DIR to continue one")
    if data_dir is None:
        raise AvelError("--data: a new run needs the AVE-format data folder")
    config = resolve_config(preset, replicate, link, **options)
    if subevents is not None and not config.train.replicate:
        raise AvelError("--subevents: only used with --replicate, found replicate off")
    return train_run(config, data_dir, out_dir, runtime, overwrite=overwrite, progress=progress, subevents=subevents)
