"""The remembered kernel timings: where they live, what a file may hold, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normstyle.runtime.tuning import MAX_BYTES, Tuning, cache_dir, current, machine_fingerprint

GOOD = {"fp32-direct": 0.02, "fp32-winograd": 0.01}


def test_timings_survive_a_new_process_and_other_machines_entries_are_kept(
    tmp_path: Path,
) -> None:
    first = Tuning(tmp_path, "a")
    first.put("64x128@32x32", GOOD)
    assert first.save()
    other = Tuning(tmp_path, "b")
    assert other.get("64x128@32x32") == {}  # another machine's timings are not this one's
    other.put("64x128@32x32", {"fp32-direct": 0.5})
    assert other.save()
    assert Tuning(tmp_path, "a").get("64x128@32x32") == GOOD
    assert Tuning(tmp_path, "b").get("64x128@32x32") == {"fp32-direct": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["tuning.json"]  # no temporary left


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b'{"format": 2, "machines": {}}',
        b'{"format": 1, "machines": []}',
        b'{"format": 1, "machines": {"m": {"k": {"fp32-direct": "1"}}}}',
        b'{"format": 1, "machines": {"m": {"k": {"fp32-direct": -1}}}}',
        b'{"format": 1, "machines": {"m": {"k": {"fp32-direct": NaN}}}}',
        b'{"format": 1, "machines": {"m": {"k": {"fp32-direct": true}}}}',
        b'{"format": 1, "machines": {"m": {"k": {"os.system": 1}}}}',
        b'{"format": 1, "machines": {"m": {"k": [0.1]}}}',
        b"\xff\xfe garbage",
    ],
)
def test_a_file_that_is_not_ours_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    """Anything but finite positive timings under known kernel names reads as no timings; the
    next save writes a valid file over it."""
    (tmp_path / "tuning.json").write_bytes(content)
    loaded = Tuning(tmp_path, "m")
    assert loaded.get("k") == {}
    loaded.put("k", GOOD)
    assert loaded.save()
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved == {"format": 1, "machines": {"m": {"k": GOOD}}}


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    entries = {f"k{i}": GOOD for i in range(4)}
    payload = json.dumps({"format": 1, "machines": {"m": entries}})
    (tmp_path / "tuning.json").write_text(payload + " " * MAX_BYTES)
    assert Tuning(tmp_path, "m").entries == {}


def test_invalid_timings_are_not_remembered() -> None:
    memory = Tuning(None, "m")
    memory.put("k", {"fp32-direct": float("inf")})
    memory.put("j", {"nonsense": 1.0})
    assert memory.entries == {}
    assert not memory.save()  # memory only: nothing written, no error


def test_a_cache_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    """The cache folder's place is taken by a file (permission bits would not stop root)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    memory = Tuning(blocker, "m")
    memory.put("k", GOOD)
    assert not memory.save()
    assert memory.get("k") == GOOD and blocker.read_text() == "x"


def test_cache_location_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NORMSTYLE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.setenv("NORMSTYLE_CACHE", "off")
    assert cache_dir() is None
    monkeypatch.delenv("NORMSTYLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "normstyle"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "normstyle"


def test_the_fingerprint_changes_with_what_changes_the_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ISA limit or another thread count selects other kernels: other timings."""
    base = machine_fingerprint()
    assert machine_fingerprint() == base
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")  # not what this suite runs under
    limited = machine_fingerprint()
    assert limited != base
    monkeypatch.undo()
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert machine_fingerprint() not in (base, limited)
    finally:
        torch.set_num_threads(threads)


def test_current_follows_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NORMSTYLE_CACHE", str(tmp_path / "one"))
    one = current()
    assert current() is one and one.directory == tmp_path / "one"
    monkeypatch.setenv("NORMSTYLE_CACHE", str(tmp_path / "two"))
    assert current() is not one and current().directory == tmp_path / "two"
