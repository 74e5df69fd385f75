"""Every output file avel-dgl writes: atomic writes, one rule for --overwrite, and one wording of
a failed write.

- `write_atomic` writes one file through a temporary file beside it; `write_texts` and
  `publish` several files all or none. A write that fails for a full disk, a read-only file
  system or a permission (any `OSError`; also torch's RuntimeError over the OSError when the
  disk fills under `torch.save`) becomes one AvelError naming the file and, for a
  full disk, the device and its size: `write_failure` is the one place that words it. The
  temporary files are removed and the previous version of every output stays as it was.
- `check_output` checks an output file before any work: its folder exists and is writable, it
  is not a folder, and an existing file is replaced only with --overwrite and only when
  avel-dgl wrote it (`written_by_avel`): a user's own file is never replaced.
- `check_owned_folder` is the same rule for an output folder (a run, a report, a make-synthetic
  folder, an ablate grid, an extract folder; each an `OwnedFolder`): a non-empty folder is one
  of ours only when it holds its kind's marker (a file; extract's is a folder), it is replaced
  only with --overwrite, and only when it holds nothing but the names its kind writes (a user's
  file there means refuse, never delete). `writing_folder` writes a new folder beside the old one and swaps it into place.

What marks a file as avel-dgl's (`SIGNATURE`): a top-level "written_by" key first in a JSON file,
a "written_by" attribute in an HDF5 file, a "Software" text chunk in a PNG image, a generator
<meta> in an HTML page (`html_mark`), and for a CSV
table a header row avel-dgl writes (`format.CSV_HEADERS`; a CSV has no place for a mark that
every reader skips).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from avel_dgl import interrupt
from avel_dgl.errors import AvelError, with_article
from avel_dgl.format import CSV_HEADERS

SIGNATURE = "avel-dgl"  # the start of every mark; the command's name follows: "avel-dgl predict"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEAD_BYTES = 1 << 16  # how much of a file the signature checks read


def mark(command: str) -> str:
    """The signature value of a file written by `command` ("avel-dgl predict")."""
    return f"{SIGNATURE} {command}"


def html_mark(command: str) -> str:
    """The mark of an HTML page, for its <head>."""
    return f'<meta name="generator" content="{mark(command)}">'


# ---- the one wording of a failed write -----------------------------------------------------------

def size_text(n_bytes: float) -> str:
    """A size in bytes as people read it: '812 B', '97.7 KiB', '1.3 MiB' (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024


def nearest_existing(path: str | Path) -> Path:
    """`path`, or the nearest of its parents that exists (a folder, or a file in the way)."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.exists() or p == p.parent)


def device_of(path: Path) -> str:
    """The file system holding `path` (its nearest existing folder), as 'the file system of
    FOLDER (SIZE)'."""
    folder = nearest_existing(path)
    if not folder.is_dir():
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return f"the file system of {folder}"
    return f"the file system of {folder} ({size_text(stat.f_blocks * stat.f_frsize)})"


def free_bytes(folder: str | Path) -> int:
    """Bytes free to this user on the file system of `folder` (its nearest existing parent)."""
    stat = os.statvfs(nearest_existing(folder))
    return stat.f_bavail * stat.f_frsize


def check_free_space(folder: str | Path, needed: int, what: str, elsewhere: str = "choose another --out") -> None:
    """Refuse, before any work, to write about `needed` bytes of `what` into `folder` where fewer
    are free: one line with both figures, and `elsewhere` saying how to write somewhere else."""
    free = free_bytes(folder)
    if needed > free:
        raise AvelError(f"{what} needs about {size_text(needed)}, but {device_of(Path(folder))} has "
                        f"{size_text(free)} free; free some space or {elsewhere}")


ROOM_MARGIN = 1 << 20  # what HDF5 may still need to close a file after the last chunk (metadata)


def check_room(folder: Path, n_bytes: int) -> None:
    """Before HDF5 writes `n_bytes` into a file in `folder`: raise ENOSPC ourselves when they (and
    ROOM_MARGIN) would not fit. HDF5 that meets a full disk itself fails again while closing the
    file, and h5py (3.x) then crashes the interpreter when it frees the file's objects."""
    if free_bytes(folder) < n_bytes + ROOM_MARGIN:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def write_failure(path: Path, error: BaseException, outcome: str) -> AvelError | None:
    """The one-line AvelError for a write of `path` that failed with `error`, or None when the
    error is not the place's (a bug, to be raised as it is). `outcome` says what was kept."""
    if isinstance(error, RuntimeError) and isinstance(error.__context__, OSError):
        error = error.__context__  # torch.save's zip writer: "unexpected pos", raised over the OSError
    code = getattr(error, "errno", None)
    if code is None:  # HDF5 tells the errno inside its message only, in an OSError or a RuntimeError
        found = re.search(r"errno = (\d+)", str(error))
        code = int(found.group(1)) if found else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return AvelError(f"{path}: cannot write, {device_of(path)} is full "
                         f"({os.strerror(code)}); {outcome}")
    if isinstance(error, OSError) or code is not None:
        reason = getattr(error, "strerror", None) or (os.strerror(code) if code else " ".join(str(error).split())[:160])
        return AvelError(f"{path}: cannot write ({reason}); {outcome}")
    return None


# ---- atomic writes -------------------------------------------------------------------------------

def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a temporary file beside it: write, flush, fsync, rename, fsync the folder.

    A crash at any instant leaves either the previous file or the new one, never a truncated one
    (at worst a stale `<name>.tmp`, which nothing reads and the next write replaces). A failed
    write (a full disk, a vanished folder) removes the temporary file and raises an AvelError
    naming `path` (`write_failure`); the previous file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        failure = write_failure(path, e, "the previous version, if any, is intact")
        with contextlib.suppress(OSError):  # there may be no temporary file, or no folder for it
            tmp.unlink()
        if failure is None:
            raise
        raise failure from None
    # The rename lives in the folder's metadata: sync it too, or a power cut may undo it.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def publish(pairs: list[tuple[Path, Path]]) -> None:
    """Rename finished temporary files over their targets, all or none: the outputs of one
    command appear together. A failed rename puts back every target as it was and raises an
    AvelError naming it (the temporary files are the caller's to remove). A signal waits until
    the renames (instant) are all done (`interrupt.deferred`)."""
    for _, target in pairs:  # a folder is never moved aside (nor deleted with the backups)
        if target.is_dir():
            raise AvelError(f"{target}: is a folder, expected a file; no output was changed")
    moved, backups = [], []
    with interrupt.deferred():
        try:
            for tmp, target in pairs:
                if target.exists():
                    backup = target.with_name(f".{target.name}.previous")
                    os.replace(target, backup)
                    backups.append((backup, target))
                os.replace(tmp, target)
                moved.append(target)
        except OSError as e:
            for target in moved:
                with contextlib.suppress(OSError):
                    target.unlink()
            for backup, target in backups:
                os.replace(backup, target)
            raise write_failure(Path(e.filename2 or e.filename), e, "no output was changed") from None
        for backup, _ in backups:
            backup.unlink()


def _new_beside(target: Path) -> Path:
    """The temporary name an output is written under before `publish` renames it into place."""
    return target.with_name(f".{target.name}.new")


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all_or_none(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write several files all or none: each writer is called with a temporary path beside its
    target (`.NAME.new`), which is synced; then all are renamed into place together (`publish`).
    A failure or a signal on the way removes the temporary files and changes no output; a failed
    write is one AvelError naming its file (`write_failure`)."""
    tmps = {target: _new_beside(target) for target in writers}
    try:
        for target, write in writers.items():
            try:
                write(tmps[target])
                _sync(tmps[target])
            except (OSError, RuntimeError) as e:  # h5py reports some failed writes as RuntimeError
                failure = write_failure(target, e, "no output was changed")
                if failure is None:
                    raise
                raise failure from None
        publish([(tmps[target], target) for target in writers])
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def writing_all_or_none(targets: list[Path], mode: str = "w"):
    """`write_all_or_none` for text written piece by piece: open a temporary file beside each
    target (text, `mode`), yield the handles, and when the block ends without error `publish`
    them over the targets together. Any failure removes the temporary files and leaves every
    target as it was; a failed write is one AvelError naming its file (`write_failure`)."""
    tmps = [_new_beside(t) for t in targets]
    current = targets[0]
    try:
        with contextlib.ExitStack() as stack:
            handles = []
            for tmp, target in zip(tmps, targets):
                current = target
                handles.append(stack.enter_context(open(tmp, mode, encoding="utf-8", newline="")))
            current = None
            yield handles
            for handle, target in zip(handles, targets):
                current = target
                handle.flush()
                os.fsync(handle.fileno())
        current = None
        publish(list(zip(tmps, targets)))
    except OSError as e:
        ours = {str(tmp): target for tmp, target in zip(tmps, targets)}
        if current is None and e.filename is not None and e.filename not in ours:
            raise  # not a write of ours (an input that failed to read inside the block)
        raise write_failure(current or ours.get(e.filename, targets[0]), e, "no output was changed") from None
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_texts(texts: dict[Path, str]) -> None:
    """Write several text files all or none; an error names the file it concerns."""
    def writer(text: str) -> Callable[[Path], None]:
        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return write

    write_all_or_none({path: writer(text) for path, text in texts.items()})


# ---- what avel-dgl wrote, and the --overwrite rule -----------------------------------------------

def _png_software(head: bytes) -> str | None:
    """The value of a PNG's 'Software' text chunk among the chunks in `head`, if any."""
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(head):
        length = int.from_bytes(head[pos:pos + 4], "big")
        kind = head[pos + 4:pos + 8]
        if kind == b"IDAT":
            return None
        body = head[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Software\x00"):
            return body.split(b"\x00", 1)[1].decode("latin-1")
        pos += 12 + length
    return None


TRUNCATED_ZIP = "a truncated zip archive"


def file_kind(path: str | Path) -> str | None:
    """What a file is by its first bytes ('an HDF5 file', 'a PNG image', 'an HTML page', 'an XML
    document', 'an empty file', TRUNCATED_ZIP, ...), for messages about a file of the wrong kind;
    None when unrecognised (damaged, or truly unknown)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head:
        return "an empty file"
    for magic, kind in ((HDF5_MAGIC, "an HDF5 file"), (PNG_MAGIC, "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive")):
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):  # a zip archive is whole only when its end record is there
        import zipfile

        return "a zip archive" if zipfile.is_zipfile(path) else TRUNCATED_ZIP
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head")) or b"<html" in text[:1024]:
        return "an HTML page"  # also a page saved by a browser, which may start with other markup
    if text.startswith(b"<?xml"):
        return "an XML document"  # e.g. a storage service's error body saved in place of a download
    if text.startswith((b"{", b"[")):
        return "a JSON file"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "a text file"
    return None


def written_by_avel(path: str | Path) -> bool:
    """Does the file at `path` carry avel-dgl's mark (see the module docstring)? Read from the
    file's content, whatever its name."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError:
        return False
    if head.startswith(HDF5_MAGIC):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                value = f.attrs.get("written_by", "")
        except (OSError, KeyError, ValueError):
            return False
        return (value.decode() if isinstance(value, bytes) else str(value)).startswith(SIGNATURE)
    if head.startswith(PNG_MAGIC):
        return (_png_software(head) or "").startswith(SIGNATURE)
    if re.match(rb'\s*\{\s*"written_by"\s*:\s*"' + re.escape(SIGNATURE.encode()), head):
        return True
    if b'<meta name="generator" content="' + SIGNATURE.encode() in head:
        return True
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    return first_line in CSV_HEADERS


def _probe(folder: Path, option: str) -> None:
    """Create and remove a file in `folder`: a real probe, as permissions, read-only mounts and
    root all answer the same way."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise AvelError(f"{option}: cannot write in {folder} ({e.strerror or e})") from None


def check_output(path: str | Path, overwrite: bool, option: str = "--out", kind: str = "a file") -> Path:
    """An output file about to be written: its folder exists and is writable, it is not a folder,
    and an existing file is replaced only with `overwrite` and only when avel-dgl wrote it (one
    rule for every command). `kind` says what the option expects, for the messages."""
    path = Path(path)
    if str(path) in ("", "."):
        raise AvelError(f"{option}: expected {kind}, found an empty name or the current folder")
    if path.is_dir():
        raise AvelError(f"{option}: {path} is a folder, expected {kind}")
    folder = path.parent
    if not folder.is_dir():
        found = "a file" if folder.exists() else "no such folder"
        raise AvelError(f"{option}: expected {kind} in an existing folder, found {found} at {folder}")
    _probe(folder, option)
    if path.exists():
        if not overwrite:
            raise AvelError(f"{option}: {path} exists; replace it with --overwrite, or choose another name")
        if not written_by_avel(path):
            raise AvelError(f"--overwrite: {path} was not written by avel-dgl (it has no avel-dgl mark), so it "
                            f"is not replaced; move it away or choose another name")
    return path


# ---- folders avel-dgl makes ----------------------------------------------------------------------

def check_folder_place(path: str | Path, option: str = "--out", write: bool = True, beside: bool = False) -> Path:
    """A folder a command will write in, created if missing: not a file, no file on the way to
    it, and, with `write`, the nearest existing folder takes a probe file (`_probe`): the folder's
    own, or with `beside` its parent's, where `writing_folder` stages a folder swapped into place.
    Called before any work; `write` False for a command that only reads what is there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AvelError(f"{option}: {path} is a file, expected a folder")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise AvelError(f"{option}: cannot create {path}: {existing} is a file")
    if write:
        _probe(nearest_existing(path.parent) if beside else existing, option)
    return path


@dataclass(frozen=True)
class OwnedFolder:
    """A kind of folder that one avel-dgl command makes (a run, a report, ...): what marks such a
    folder as ours, the names it may hold, and how messages name it."""

    noun: str  # in messages: "holds no avel-dgl run", "already holds a run"
    marker: str  # a name every such folder holds from its start: a non-empty folder without it is not ours
    allowed: Callable[[str], bool] = lambda name: True  # names it may hold; --overwrite refuses any other
    go_on: str = ""  # another way on, before "replace it with --overwrite": "continue it with --resume {path}, "
    swapped: bool = False  # written whole beside it and swapped in (`writing_folder`), not written in place


def check_owned_folder(path: str | Path, kind: OwnedFolder, overwrite: bool | None, option: str = "--out",
                       write: bool = True) -> bool:
    """The one rule for an output folder, checked before any work (`check_folder_place` first).
    A missing or empty folder is free. A non-empty one is ours only when it holds `kind.marker`,
    else it is refused whatever the options. Ours, it is replaced only with `overwrite`, and only
    when every name in it is one `kind` writes (`kind.allowed`): a user's file there is named,
    never deleted. `overwrite` None: the command continues a folder of its own (ablate's grid,
    extract's store) and replaces nothing; `write` False: the command only reads the folder (no
    probe file). Returns whether `path` holds a folder of ours."""
    path = check_folder_place(path, option, write, beside=kind.swapped)
    if not path.is_dir() or not any(path.iterdir()):
        return False
    if not (path / kind.marker).exists():
        raise AvelError(f"{option}: {path} is not empty and holds no avel-dgl {kind.noun} (no {kind.marker}); "
                        "choose a new or empty folder")
    if overwrite is None:
        return True
    if not overwrite:
        raise AvelError(f"{option}: {path} already holds {with_article(kind.noun)}; "
                        f"{kind.go_on.format(path=path)}replace it with --overwrite, or choose another folder")
    foreign = sorted(p.name for p in path.iterdir() if not kind.allowed(p.name))
    if foreign:
        raise AvelError(f"--overwrite: {path} holds {foreign[0]}, which avel-dgl did not write; move it away "
                        f"(--overwrite deletes only {with_article(kind.noun)}'s own files) or choose another folder")
    return True


STAGING_MARKER = ".avel-dgl-partial"  # marks a staging folder as ours, so a later run may remove it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(path: Path) -> list[Path]:
    """Remove the staging folders of `path` that killed processes left (`.NAME.partial-PID`
    holding STAGING_MARKER, PID no longer running); a folder of that name without the marker, or
    of a running process, is left alone. Returns those removed."""
    removed = []
    for folder in path.parent.glob(f".{path.name}.partial-*"):
        pid = folder.name.rpartition("-")[2]
        if (pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
                and (folder / STAGING_MARKER).is_file()):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def writing_folder(path: str | Path, outcome: str) -> Iterator[Path]:
    """Yield a fresh hidden sibling of `path` (`.NAME.partial-PID`, marked STAGING_MARKER) to
    write a whole folder into; when the block ends without error, swap it in for `path` (an
    earlier folder there, already allowed by `check_owned_folder`, is replaced). Any failure or
    signal removes the staging folder and leaves `path` as it was; a failed write is one AvelError
    naming `path` and `outcome` (`write_failure`). What killed runs left is removed first."""
    path = Path(path)
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        remove_stale_staging(path)
        staging.mkdir()
        (staging / STAGING_MARKER).touch()
    except OSError as e:
        raise write_failure(path, e, outcome) from None
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        yield staging
        (staging / STAGING_MARKER).unlink()
        with interrupt.deferred():  # the renames are instant: a signal waits for them
            if path.exists():
                os.replace(path, old)
            try:
                os.replace(staging, path)
            except OSError:
                if old.exists():
                    os.replace(old, path)  # the earlier folder stays as it was
                raise
    except (OSError, RuntimeError) as e:  # h5py reports some failed writes as RuntimeError
        failure = write_failure(path, e, outcome)
        if failure is None:
            raise
        raise failure from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if path.exists():  # the earlier folder is replaced (or was put back: then there is no `old`)
            shutil.rmtree(old, ignore_errors=True)
