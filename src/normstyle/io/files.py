"""Files: opening inputs safely, checking output targets before work, writing outputs atomically
(all of a set or none), and content digests. Imports nothing of normstyle but its errors."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from normstyle.errors import InputError, OptionError


def open_regular_file(path: Path) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file, else raise :class:`InputError`.

    Opened without blocking and checked on the open descriptor, so a fifo (which would block
    ``open`` until a writer appears) or a device is refused at once, even if it replaced a
    regular file after a check.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot open ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (fifo, device, socket)"
        raise InputError(f"{path}: is {kind}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open_regular_file(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one existing file (through links too)."""
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_target(path: str | os.PathLike[str]) -> Path:
    """Fail early if a file cannot be written at ``path``: its folder is missing or not
    writable (tried by creating a file there: permission bits do not stop root, /proc does), or
    ``path`` is a directory or some other non-regular file."""
    if not str(path):  # checked before Path(), which turns "" into "."
        raise OptionError("an output file name is empty")
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: folder {parent} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: exists and is not a regular file")
    reason = _unwritable(parent)
    if reason:
        raise InputError(f"{path}: cannot write in {parent} ({reason})")
    return path


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (tried), or None.

    Tried with an unnamed file (``O_TMPFILE``) where the system has them: nothing appears in the
    folder, so nothing is left behind if the process is stopped during the check. Elsewhere a
    named temporary file is created and removed at once.
    """
    unnamed = getattr(os, "O_TMPFILE", 0)
    if unnamed:
        try:
            os.close(os.open(folder, unnamed | os.O_WRONLY, 0o600))
            return None
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return str(error.strerror or error)  # a real refusal: read-only, /proc …
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".normstyle-", suffix=".probe"):
            return None
    except OSError as error:
        return str(error.strerror or error)


def check_folder(folder: str | os.PathLike[str], create: bool = False) -> Path:
    """Check that files can be written in ``folder``: if it exists, in it; else in its nearest
    existing ancestor, where it could be created. ``create`` makes it (with its parents)."""
    if not str(folder):  # checked before Path(), which turns "" into "."
        raise OptionError("an output folder name is empty")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or error
            raise InputError(f"{folder}: cannot create the folder ({reason})") from None
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{folder}: cannot be created, {existing} is not a folder")
    reason = _unwritable(existing)
    if reason:
        where = "" if existing == folder else f" (in {existing})"
        raise InputError(f"{folder}: cannot write there{where} ({reason})")
    return folder


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_handle)`` on a temporary file next to ``path``, then rename it there.
    An OSError (disk full, permissions) becomes an :class:`InputError` naming ``path``."""
    atomic_write_many([(path, write)])
    return path


def atomic_write_many(items: Sequence[tuple[Path, Callable[[IO[bytes]], object]]]) -> list[Path]:
    """Write several files so that either all of them are written or none is: every target is
    checked, every file is written to a temporary name beside its target, then all are renamed.
    """
    for path, _ in items:
        check_target(path)
    temporaries: list[str] = []
    try:
        for path, write in items:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then renamed)
                dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
            )
            temporaries.append(handle.name)
            try:
                with handle:
                    write(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(handle.name, 0o666 & ~umask)
        for (path, _), temporary in zip(items, temporaries):
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        raise
    return [path for path, _ in items]


@contextlib.contextmanager
def final_write(finish: bool = True) -> Iterator[None]:
    """Around the writing of results that belong together (a command's files; a batch job's PNG
    and its record): Ctrl-C and SIGTERM wait until they are all in place (never half a set of
    them), and with ``finish`` the command then completes (its summary printed, exit 0) rather
    than report an interruption that lost nothing; without it, a signal that came meanwhile is
    acted on once they are in place. ``normstyle.cli.main`` restores the handlers when the
    command returns."""
    # Python-level handlers that only note the signal, not a blocked signal mask: the mask is
    # per thread, and the kernel hands a process's signal to any thread that does not block it
    # (torch's worker threads), whose C handler still runs the main thread's Python handler.
    noted: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: nothing to defer
            previous[signum] = signal.signal(signum, lambda number, _frame: noted.append(number))
    written = False
    try:
        yield
        written = True
    finally:
        for signum, handler in previous.items():
            # After a complete write with ``finish``, later signals (and the noted ones) are
            # dropped; otherwise the command's own handlers come back and a noted signal acts.
            restored = signal.SIG_DFL if handler is None else handler  # None: set from C
            signal.signal(signum, signal.SIG_IGN if written and finish else restored)
    if noted and not finish and previous:
        signal.raise_signal(noted[-1])
