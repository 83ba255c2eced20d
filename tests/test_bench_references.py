"""The benchmark's stored references are reused only for the same files, size and objective."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_finish = pytest.importorskip("bench_finish")


def test_reference_key_follows_files_size_and_objective(tmp_path, monkeypatch):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    content.write_bytes(b"photo")
    style.write_bytes(b"painting")
    key = bench_finish.reference_key(content, style, 256)
    assert bench_finish.reference_key(content, style, 256) == key
    assert bench_finish.reference_key(content, style, 512) != key
    assert bench_finish.reference_key(style, content, 256) != key
    content.write_bytes(b"photp")  # same size, other bytes
    assert bench_finish.reference_key(content, style, 256) != key
    content.write_bytes(b"photo")
    # A changed default of the objective (here β) misses the stored reference.
    original = bench_finish.StyleOptions

    def other_default(**kwargs):
        return original(style_weight=1.0, **kwargs)

    monkeypatch.setattr(bench_finish, "StyleOptions", other_default)
    assert bench_finish.reference_key(content, style, 256) != key
    monkeypatch.undo()
    # So does an edit of a module that defines the objective.
    code = tmp_path / "style"
    code.mkdir()
    for name in bench_finish.OBJECTIVE_MODULES:
        (code / name).write_bytes((bench_finish.OBJECTIVE_CODE / name).read_bytes())
    monkeypatch.setattr(bench_finish, "OBJECTIVE_CODE", code)
    assert bench_finish.reference_key(content, style, 256) == key
    (code / "losses.py").write_text("# edited\n", encoding="utf-8")
    assert bench_finish.reference_key(content, style, 256) != key


def test_store_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_finish, "REFERENCES", tmp_path / "refs.json")
    assert bench_finish.cached_references() == {}
    bench_finish.store_reference("a", {"loss": 1.5})
    bench_finish.store_reference("b", {"loss": 2.5})
    assert bench_finish.cached_references() == {"a": {"loss": 1.5}, "b": {"loss": 2.5}}
    (tmp_path / "refs.json").write_text("not json")
    assert bench_finish.cached_references() == {}


@pytest.mark.vgg
@pytest.mark.parametrize("tile", [None, "16"])
def test_the_bench_reads_what_our_cli_reports(capsys, tmp_path, tile):
    """The benchmark records each run's iterations and precision from the CLI's last line; a
    change of that line's format must not silently drop them."""
    from normstyle.cli import main

    out = tmp_path / "out (1).png"  # a path with what the line's own brackets look like
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out)]
    argv += ["--size", "32", "--iterations", "3", "--precision", "fp32", "--no-progress"]
    argv += [] if tile is None else ["--tile", tile]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert bench_finish.reported(stdout) == {"iterations": 3, "device": "cpu", "precision": "fp32"}
    assert bench_finish.reported("something else\n") == {}
