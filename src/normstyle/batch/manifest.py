"""A batch's jobs: read from a manifest (JSON lines) or built from globs, checked up front.

Each manifest line is one job: ``content`` (a path), ``style`` (a path or a list of paths), any
``stylize`` option by its long name (``size``, ``iterations``, ``style_weight``,
``preserve_colors``, ``masks``, …; dashes or underscores) and an optional ``name`` for the output
file. Paths are relative to the manifest's folder. A line that cannot be a job (not JSON, no
content, an unknown or impossible option, a name used twice) is reported with its number and
left out; the others still run. Whether an image can be read is the job's own business: a job
whose file is missing or not an image fails alone, when it runs.

Each job has a **settings hash**: the SHA-256 of its options (with its seed) and of the bytes of
every input file. The output PNG carries it, and so does the results file: a job whose output
exists with the same hash is done already and is skipped on the next run.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from normstyle.errors import NormstyleError, OptionError
from normstyle.style.options import StyleOptions

# Options a manifest may not set: where output goes and what is shown are the batch's business.
_NOT_PER_JOB = {"progress", "save_every", "verbose", "device"}
# The long names of the command line that differ from the fields.
_RENAMED = {"size": "long_side"}
_SAFE_NAME = re.compile(r"[^\w.-]+")


@dataclass
class BatchJob:
    """One stylisation of a batch."""

    line: int  # in the manifest (0 for jobs built from globs)
    name: str  # the output's file name, without .png
    content: str  # paths, absolute
    styles: list[str]
    options: dict[str, Any] = field(default_factory=dict)  # StyleOptions fields, seed included
    masks: list[str] = field(default_factory=list)
    named: bool = False  # the manifest gave the name

    def files(self) -> list[str]:
        """Every input file, in a fixed order."""
        return [self.content, *self.styles, *self.masks]

    def settings_hash(self) -> str:
        """SHA-256 of the options and of every input file's bytes (a missing file counts as
        missing, so the hash still exists and the job fails when it runs)."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.options, sort_keys=True, default=str).encode())
        for path in self.files():
            digest.update(b"\0" + path.encode() + b"\0" + _file_digest(path).encode())
        return digest.hexdigest()


def _file_digest(path: str) -> str:
    """SHA-256 of a file's bytes, read once per batch however many jobs share the file (a style
    image used by thousands of jobs) and however often their hashes are asked for (the cache is
    emptied whenever a batch's jobs are read; a file whose size or time changed is read again)."""
    try:
        status = os.stat(path)
    except OSError as error:
        return f"unreadable: {error.strerror}"
    return _digest_of(path, status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _digest_of(path: str, size: int, modified: int) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        return f"unreadable: {error.strerror}"
    return digest.hexdigest()


@dataclass
class ManifestError:
    """A manifest line that is not a job, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


_FIELDS = {f.name for f in fields(StyleOptions)}


def _option_name(key: str) -> str:
    name = key.strip().replace("-", "_")
    return _RENAMED.get(name, name)


def job_from_record(
    record: Any, line: int, folder: Path, defaults: dict[str, Any] | None = None
) -> BatchJob:
    """One job from a manifest record (a dict), or an :class:`OptionError` saying why not."""
    if not isinstance(record, dict):
        raise OptionError("a job must be a JSON object with at least 'content' and 'style'")
    record = dict(record)
    content = record.pop("content", None)
    style = record.pop("style", record.pop("styles", None))
    name = record.pop("name", None)
    if not isinstance(content, str) or not content:
        raise OptionError("'content' must be an image path")
    styles = [style] if isinstance(style, str) else style
    paths = isinstance(styles, list) and all(isinstance(s, str) and s for s in styles)
    if not paths or not styles:
        raise OptionError("'style' must be an image path or a list of them")
    options: dict[str, Any] = {}
    for key, value in {**(defaults or {}), **record}.items():
        option = _option_name(key)
        if option not in _FIELDS or option in _NOT_PER_JOB:
            from normstyle.errors import did_you_mean

            known = (_FIELDS - _NOT_PER_JOB) | {"size"}
            raise OptionError(f"unknown option '{key}'{did_you_mean(option, known)}")
        options[option] = value
    masks = options.pop("masks", None)
    style_masks = options.pop("style_masks", None)
    for label, value in (("masks", masks), ("style_masks", style_masks)):
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise OptionError(f"'{label}' must be a list of image paths")
    if style_masks:
        raise OptionError("'style_masks' are not supported in batch jobs yet; use 'masks'")
    for key in ("iterations", "scales"):  # JSON has no 'auto' type: keep strings as given
        if isinstance(options.get(key), str) and options[key] != "auto":
            raise OptionError(f"'{key}' must be a number or \"auto\"")
    for key in ("style_blend",):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    resolve = lambda path: str((folder / path).resolve())  # noqa: E731
    job = BatchJob(
        line=line,
        name="",
        content=resolve(content),
        styles=[resolve(s) for s in styles],
        options=options,
        masks=[resolve(m) for m in masks or []],
    )
    if job.masks and len(job.masks) != len(job.styles):
        raise OptionError(f"{len(job.masks)} masks for {len(job.styles)} style images")
    try:  # every option checked now, not when the job runs
        StyleOptions(**{**options, "masks": tuple(job.masks) or None, "progress": False})
    except NormstyleError as error:
        raise OptionError(str(error)) from None
    except TypeError as error:
        raise OptionError(f"bad option: {error}") from None
    if name is not None and (not isinstance(name, str) or not _SAFE_NAME.sub("", name)):
        raise OptionError("'name' must be a file name")
    stems = [Path(p).stem for p in (content, *styles)]
    job.name = _safe(name.removesuffix(".png") if name else "__".join(stems))
    job.named = name is not None
    if "seed" not in options or options["seed"] is None:
        # A seed from what the job is, so that every engine and every rerun draws the same.
        options["seed"] = int(job.settings_hash()[:12], 16) % 2**31
    return job


def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name).strip("._") or "job"


def read_manifest(
    path: str | os.PathLike[str], defaults: dict[str, Any] | None = None
) -> tuple[list[BatchJob], list[ManifestError]]:
    """The jobs of a manifest and the lines that are not jobs. Raises :class:`OptionError`
    if the manifest itself cannot be read."""
    from normstyle.errors import InputError
    from normstyle.io.files import open_regular_file

    path = Path(path)
    _digest_of.cache_clear()
    try:
        with open_regular_file(path) as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a manifest is JSON lines)") from None
    jobs, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(ManifestError(number, f"not JSON ({error.msg})"))
            continue
        try:
            jobs.append(job_from_record(record, number, path.parent, defaults))
        except OptionError as error:
            errors.append(ManifestError(number, str(error)))
    _unique_names(jobs, errors)
    return jobs, errors


def jobs_from_globs(
    content: str, style: str, pair: bool = False, defaults: dict[str, Any] | None = None
) -> list[BatchJob]:
    """Jobs from two globs: every content with every style, or (``pair``) the n-th content
    with the n-th style, in sorted order."""
    _digest_of.cache_clear()
    contents = sorted(glob.glob(os.path.expanduser(content), recursive=True))
    styles = sorted(glob.glob(os.path.expanduser(style), recursive=True))
    for pattern, found in ((content, contents), (style, styles)):
        if not found:
            raise OptionError(f"no file matches '{pattern}'")
    if pair and len(contents) != len(styles):
        raise OptionError(
            f"--pair needs as many contents as styles: {len(contents)} and {len(styles)}"
        )
    pairs = zip(contents, styles) if pair else ((c, s) for c in contents for s in styles)
    jobs = [job_from_record({"content": c, "style": s}, 0, Path.cwd(), defaults) for c, s in pairs]
    errors: list[ManifestError] = []
    _unique_names(jobs, errors)
    if errors:
        raise OptionError(str(errors[0]))
    return jobs


def _unique_names(jobs: list[BatchJob], errors: list[ManifestError]) -> None:
    """Two jobs may not write the same file: a given name used twice is an error; a name made
    from the file names gets a number where needed."""
    seen: dict[str, int] = {}
    for job in list(jobs):
        if job.name in seen:
            if job.named:
                errors.append(ManifestError(job.line, f"the name '{job.name}' is used twice"))
                jobs.remove(job)
                continue
            seen[job.name] += 1
            job.name = f"{job.name}_{seen[job.name]}"
        seen.setdefault(job.name, 1)
