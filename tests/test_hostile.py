"""Hostile inputs, generated here (no binaries committed): each ends in a clean error — the
right exit code, one line on stderr, no traceback, no hang, no output or temporary file left —
or, for signals, in the documented exit code and message."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import normstyle
from nets import STYLIZE_BUILTINS
from normstyle.cli import main
from normstyle.io.files import final_write

pytestmark = pytest.mark.timeout(120)  # a hang is a failure, not a stuck suite

TINY = ["--size", "64", "--iterations", "2", "--no-progress", "--seed", "1"]
REPO = Path(__file__).resolve().parents[1]


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_clean(capsys, folder: Path, argv: list[str], code: int, message: str) -> str:
    """Run the CLI in-process; check the exit code, one line, the message, no new files."""
    before = files_in(folder)
    got = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert got == code, (argv, err)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert message in err, err
    assert files_in(folder) == before, files_in(folder) - before  # nothing written or left
    return err


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(path)
    return path


# --- 1. hangs ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["content", "style", "init"])
def test_a_fifo_is_refused_without_blocking(capsys, tmp_path: Path, photo: Path, where) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    args = {"content": str(photo), "style": str(photo), "init": "noise"}
    args[where] = str(fifo)
    argv = ["stylize", args["content"], args["style"], "-o", str(tmp_path / "o.png"), *TINY]
    run_clean(capsys, tmp_path, [*argv, "--init", args["init"]], 1, "not a regular file")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["--masks", "--style-masks"])
def test_a_fifo_or_a_bomb_as_a_mask_is_refused(capsys, tmp_path: Path, photo: Path, option) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    argv = ["stylize", str(photo), str(photo), "-o", str(tmp_path / "o.png"), *TINY]
    run_clean(capsys, tmp_path, [*argv, option, str(fifo)], 1, "not a regular file")
    bomb = tmp_path / "bomb.png"
    with warnings.catch_warnings():  # Pillow warns about the bomb it is asked to make
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.new("L", (12000, 8000)).save(bomb)  # 96 Mpx of zeros: a few KB on disk
    run_clean(capsys, tmp_path, [*argv, option, str(bomb)], 1, "pixels")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.timeout(60)
def test_a_fifo_as_weights_is_refused(capsys, tmp_path: Path) -> None:
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    run_clean(capsys, tmp_path, ["weights", "show", str(fifo)], 1, "not a regular file")
    pth = tmp_path / "w.pth"
    os.mkfifo(pth)
    run_clean(capsys, tmp_path, ["weights", "show", str(pth)], 1, "not a regular file")


@pytest.mark.vgg
@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["normalize", "stats"])
def test_a_strip_image_in_a_folder_is_skipped_not_a_hang(capsys, tmp_path: Path, command) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40000, 1), (200, 100, 50)).save(images / "strip.png")
    out = tmp_path / ("n.safetensors" if command == "normalize" else "report")
    run_clean(
        capsys,
        tmp_path,
        [command, "--images", str(images), "-o", str(out), "--no-progress"],
        1,
        "none of the 1 image(s) could be used (the first: ",
    )


# --- 2. tracebacks instead of one line -------------------------------------------------------


def weights_file(path: Path, arch: str = "vgg11", metadata: dict | None = None, **tensors) -> Path:
    from safetensors.torch import save_file

    from normstyle.nets import VGG

    state = {k: v.contiguous() for k, v in VGG(arch).state_dict().items()}
    state.update(tensors)
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"normstyle": "{not json"}, "its 'normstyle' metadata is not valid JSON"),
        ({"normstyle": "[1, 2]"}, "its 'normstyle' metadata is an array, not a JSON object"),
        ({"normstyle": "null"}, "its 'normstyle' metadata is null, not a JSON object"),
        ({"normstyle": '{"preprocessing": 5}'}, "names an unknown preprocessing (5;"),
        ({"normstyle": '{"preprocessing": "bogus"}'}, "names an unknown preprocessing ('bogus';"),
    ],
)
def test_bad_metadata_is_one_line_everywhere(
    capsys, tmp_path: Path, photo: Path, metadata, message
) -> None:
    net = weights_file(tmp_path / "net.safetensors", metadata=metadata)
    out = str(tmp_path / "o.png")
    for argv in (
        ["stylize", str(photo), str(photo), "-o", out, "--weights", str(net), *TINY],
        ["weights", "show", str(net)],
        ["normalize", "--verify", str(net), "--images", str(tmp_path), "--no-progress"],
    ):
        run_clean(capsys, tmp_path, argv, 1, message)


def test_a_quantised_table_shorter_than_its_indices(capsys, tmp_path: Path, photo: Path) -> None:
    from safetensors.torch import save_file

    raw = {
        "block1_conv1_W_q": torch.full((64, 3, 3, 3), 200, dtype=torch.uint8),
        "block1_conv1_W_table": torch.zeros(16),
        "block1_conv1_b": torch.zeros(64),
    }
    path = tmp_path / "q.safetensors"
    save_file(raw, str(path))
    out = str(tmp_path / "o.png")
    for argv in (
        ["stylize", str(photo), str(photo), "-o", out, "--weights", str(path), *TINY],
        ["stats", "--weights", str(path), "--images", str(tmp_path), "-o", str(tmp_path / "r")],
    ):
        run_clean(
            capsys, tmp_path, argv, 1, f"{path}: quantised weights: block1_conv1 indexes entry 200"
        )


@pytest.mark.parametrize("value", [str(2**64), "-1", "1e3"])
def test_seed_out_of_range_is_a_usage_error(capsys, tmp_path: Path, value: str) -> None:
    out = str(tmp_path / "o.png")
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", out, "--seed", value]
    run_clean(capsys, tmp_path, argv, 2, "--seed")
    run_clean(capsys, tmp_path, ["lab", "norms", "--tiny", "-o", out, "--seed", value], 2, "--seed")


@pytest.mark.vgg
def test_stats_on_only_corrupt_images(capsys, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run_clean(
        capsys,
        tmp_path,
        ["stats", "--images", str(images), "-o", str(tmp_path / "r"), "--no-progress"],
        1,
        "none of the 2 image(s) could be used",
    )


def test_api_refuses_sources_that_are_not_images() -> None:
    with pytest.raises(TypeError, match="an image must be a file path"):
        normstyle.stylize(None, "builtin:swirls", long_side=32, iterations=1)
    with pytest.raises(TypeError, match="got bytes"):
        normstyle.stylize(b"\x89PNG", "builtin:swirls", long_side=32, iterations=1)
    with pytest.raises(ValueError, match=r"no pixels \(0×0\)"):
        normstyle.stylize(Image.new("RGB", (0, 0)), "builtin:swirls", long_side=32, iterations=1)


# --- 3. non-finite, negative, duplicate weights --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--style-blend", "nan,1"],
        ["--style-blend", "inf,1"],
        ["--style-blend", "-1,2"],
        ["--style-layers", "relu1_1:nan"],
        ["--style-layers", "relu1_1:inf"],
        ["--content-layers", "relu4_2:nan"],
        ["--style-layers", "relu1_1:-5,relu2_1:1"],
        ["--style-layers", "relu1_1,relu1_1"],
        ["--style-layers", "relu1_1:0.5,relu1_1:0.7"],
        ["--content-weight", "nan"],
        ["--learning-rate", "inf"],
    ],
)
def test_bad_weights_are_usage_errors_at_parse_time(capsys, tmp_path: Path, args) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "builtin:swirls"]
    run_clean(capsys, tmp_path, [*argv, "-o", str(tmp_path / "o.png"), *TINY, *args], 2, "error")


# --- 4. too small after resizing, 5. no upper bounds ----------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "16"], "photo.png would be 16×12 px (--size 16)"),
        (["--size", "64", "--scales", "3"], "photo.png would be 16×12 px at level 1 of 3"),
        (["--style-scale", "1e-9"], "photo.png would be 1×1 px"),
        (["--style-scale", "100"], "style_scale 100 is more than 8"),
        (["--size", "100000"], "needs about"),
    ],
)
def test_sizes_are_checked_before_any_work(
    capsys, tmp_path: Path, photo: Path, args, message
) -> None:
    started = time.perf_counter()
    argv = ["stylize", str(photo), str(photo), "-o", str(tmp_path / "o.png"), *TINY, *args]
    run_clean(capsys, tmp_path, argv, 2, message)
    assert time.perf_counter() - started < 30  # refused up front, not after the work


def test_a_one_pixel_wide_image_is_named(capsys, tmp_path: Path, photo: Path) -> None:
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 4000)).save(strip)
    out = str(tmp_path / "o.png")
    run_clean(
        capsys,
        tmp_path,
        ["stylize", str(strip), str(photo), "-o", out, *TINY],
        2,
        f"the content image {strip} would be 1×64 px (--size 64): the network needs at least 16"
        " px on the short side; it needs --size 64000 or more",
    )
    run_clean(
        capsys,
        tmp_path,
        ["stylize", str(photo), str(strip), "-o", out, *TINY],
        2,
        f"the style image {strip} would be 1×64 px",
    )


def test_folder_tools_refuse_a_tiny_short_side(capsys, tmp_path: Path) -> None:
    net = weights_file(tmp_path / "n.safetensors", metadata={"normstyle": '{"normalized": true}'})
    for argv in (
        ["normalize", "--verify", str(net), "--images", str(tmp_path), "--short-side", "1"],
        ["stats", "--images", str(tmp_path), "-o", str(tmp_path / "r"), "--short-side", "8"],
    ):
        run_clean(capsys, tmp_path, argv, 2, "must be at least 32 px")


def test_the_folder_tools_say_that_size_is_now_short_side(capsys, tmp_path: Path) -> None:
    for command in (["normalize", "-o", "n.safetensors"], ["stats", "-o", "r"]):
        argv = [*command, "--images", str(tmp_path), "--size", "256"]
        run_clean(capsys, tmp_path, argv, 2, "--size is now --short-side")


# --- 6. partial outputs, 7. late failures ----------------------------------------------------


def test_normalize_checks_both_outputs_before_the_work(capsys, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "side.json").mkdir()
    run_clean(
        capsys,
        tmp_path,
        ["normalize", "--images", str(tmp_path), "-o", str(tmp_path / "out/side.safetensors")],
        1,
        "side.json: is a directory",
    )


def test_stats_checks_every_report_file_before_the_work(capsys, tmp_path: Path) -> None:
    (tmp_path / "r" / "stats.md").mkdir(parents=True)
    run_clean(
        capsys,
        tmp_path,
        ["stats", "--images", str(tmp_path), "-o", str(tmp_path / "r")],
        1,
        "stats.md: is a directory",
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/proc/x.png", "cannot write in /proc"),
        ("{tmp}/dir.png", "is a directory"),
        ("/dev/full/x.png", "folder /dev/full does not exist"),
    ],
)
def test_unwritable_outputs_fail_before_the_run(capsys, tmp_path: Path, target, message) -> None:
    (tmp_path / "dir.png").mkdir()
    out = target.format(tmp=tmp_path)
    started = time.perf_counter()
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", out, "--size", "512"]
    run_clean(capsys, tmp_path, argv, 1, message)
    assert time.perf_counter() - started < 10


def test_lab_checks_its_folder_first(capsys, tmp_path: Path) -> None:
    started = time.perf_counter()
    run_clean(capsys, tmp_path, ["lab", "init", "-o", "/dev/full/x"], 1, "/dev/full")
    assert time.perf_counter() - started < 5  # the experiment itself takes ~10 s


def test_a_failed_final_write_names_the_output(capsys, tmp_path: Path, monkeypatch) -> None:
    def full(self, fp, format=None, **params):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "out.png"
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out), *TINY]
    err = run_clean(capsys, tmp_path, argv, 1, f"{out}: cannot write (No space left on device)")
    assert ".part" not in err


# --- 8. NaN networks, files shown as they are ------------------------------------------------


def test_non_finite_weights_are_refused_wherever_read(capsys, tmp_path: Path, photo: Path) -> None:
    bad = torch.zeros(128, 64, 3, 3)
    bad[3, 2, 1, 1] = float("nan")
    net = weights_file(
        tmp_path / "nan.safetensors",
        metadata={"normstyle": '{"normalized": true}'},
        **{"conv2_1.weight": bad},
    )
    message = "conv2_1.weight has values that are not finite"
    out = str(tmp_path / "o.png")
    for argv in (
        ["normalize", "--weights", str(net), "--images", str(tmp_path), "-o", f"{out}.safetensors"],
        ["normalize", "--verify", str(net), "--images", str(tmp_path)],
        ["stylize", str(photo), str(photo), "-o", out, "--weights", str(net), *TINY],
        ["weights", "show", str(net)],
    ):
        run_clean(capsys, tmp_path, argv, 1, message)


def test_weights_show_reports_what_is_in_the_file(capsys, tmp_path: Path) -> None:
    net = weights_file(tmp_path / "w.safetensors", **{"conv2_1.weight": torch.zeros(128, 64, 5, 5)})
    code = main(["weights", "show", str(net)])
    captured = capsys.readouterr()
    assert code == 1
    assert "conv2_1.weight   128×64×5×5" in captured.out  # the file's shape, not VGG's
    assert captured.err.strip().endswith("expected (128, 64, 3, 3)")
    assert len(captured.err.strip().splitlines()) == 1


# --- 9. messages -------------------------------------------------------------------------------


def test_save_every_refuses_to_overwrite_a_users_file(capsys, tmp_path: Path) -> None:
    mine = tmp_path / "o_1.png"
    mine.write_bytes(b"my own picture")
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(tmp_path / "o.png")]
    run_clean(capsys, tmp_path, [*argv, *TINY, "--save-every", "1"], 2, "o_1.png exists")
    assert mine.read_bytes() == b"my own picture"


def test_a_pickle_with_objects_is_refused_in_one_line(capsys, tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv1_1.weight": os.system}, handle, protocol=4)
    run_clean(capsys, tmp_path, ["weights", "show", str(path)], 1, "refused: it holds Python")


def test_a_text_file_as_weights(capsys, tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_text("hello, not weights")
    run_clean(
        capsys,
        tmp_path,
        ["weights", "show", str(path)],
        1,
        "not a PyTorch weights file (neither a zip archive nor a pickle)",
    )


def test_a_means_file_that_is_not_an_object(capsys, tmp_path: Path) -> None:
    means = tmp_path / "m.json"
    means.write_text(json.dumps([1, 2, 3]))
    argv = ["normalize", "--compare", "--images", str(tmp_path), "--means", str(means)]
    run_clean(capsys, tmp_path, argv, 1, "expected a JSON object")


def spawn(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "normstyle", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_while_importing_is_one_line(tmp_path: Path) -> None:
    process = spawn(["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", "o.png"], tmp_path)
    time.sleep(0.4)  # the command is still importing torch
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["normstyle: interrupted; nothing written"]
    assert files_in(tmp_path) == set()


@pytest.mark.vgg
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sent", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_after_intermediates_says_what_was_kept(tmp_path: Path, sent, code, word) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", "o.png", "--size", "64"]
    argv += ["--iterations", "500", "--save-every", "1", "--no-progress", "--precision", "fp32"]
    process = spawn(argv, tmp_path)
    deadline = time.monotonic() + 90
    while not (tmp_path / "o_002.png").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"normstyle stylize: {word}; kept "), err
    assert "intermediate image(s) (o_001.png … o_" in lines[0]
    assert "final output not written" in lines[0]
    assert not (tmp_path / "o.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file


class _Raised(Exception):
    pass


def _raise(signum: int, _frame: object) -> None:
    raise _Raised(signum)


def _signal_from_another_thread(signum: int) -> None:
    """Send ``signum`` to this process from a helper thread, so that the kernel may deliver it
    to any thread (as when a user presses Ctrl-C while torch's threads run), and give the main
    thread the moment in which a Python handler would run."""
    sender = threading.Thread(target=os.kill, args=(os.getpid(), signum))
    sender.start()
    sender.join()
    time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_write_waits_whatever_thread_receives_it(signum: int) -> None:
    """Found when a run was killed right after its output appeared: a blocked signal mask covers
    only the main thread. With ``finish`` the signal is dropped; without it, it acts after."""
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        steps = []
        with final_write():
            _signal_from_another_thread(signum)
            steps.append("written")
        _signal_from_another_thread(signum)  # ignored from now on: the command completes
        assert steps == ["written"]
        signal.signal(signum, _raise)
        with pytest.raises(_Raised), final_write(finish=False):
            _signal_from_another_thread(signum)
            steps.append("all files")
        assert steps == ["written", "all files"]
        assert signal.getsignal(signum) is _raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- found by an independent review ----------------------------------------------------------


@pytest.mark.vgg
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_output_is_written_changes_nothing(tmp_path: Path, sent) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", "o.png", *TINY]
    process = spawn(argv, tmp_path)
    deadline = time.monotonic() + 90
    while not (tmp_path / "o.png").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for _ in range(20):  # during the summary, the return and the interpreter's shut-down
        if process.poll() is not None:
            break
        process.send_signal(sent)
        time.sleep(0.02)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert out.startswith("wrote o.png")


@pytest.mark.vgg
@pytest.mark.slow
def test_a_summary_that_cannot_be_printed_is_a_warning(tmp_path: Path) -> None:
    command = STYLIZE_BUILTINS
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*command, "-o", "o.png", *TINY],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["normstyle: warning: could not print the results (No space left on device)"]
    assert (tmp_path / "o.png").is_file()
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(
        [*command, "-o", "p.png", *TINY], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "\\xd7" in done.stdout  # "×" escaped, not a crash


def test_lab_checks_every_output_and_leaves_no_partial_experiment(capsys, tmp_path: Path) -> None:
    (tmp_path / "lab" / "norms.json").mkdir(parents=True)
    started = time.perf_counter()
    run_clean(
        capsys, tmp_path, ["lab", "norms", "--tiny", "-o", str(tmp_path / "lab")], 1, "norms.json"
    )
    assert time.perf_counter() - started < 2  # before the experiment, not after it


def test_an_interrupted_lab_leaves_nothing(capsys, tmp_path: Path, monkeypatch) -> None:
    from normstyle import lab

    def interrupted(out: Path, tiny: bool, seed: int):
        (out / "norms.png").write_bytes(b"half of an experiment")
        raise KeyboardInterrupt

    monkeypatch.setitem(lab.EXPERIMENTS, "norms", interrupted)
    out = tmp_path / "new" / "lab"
    assert main(["lab", "norms", "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert files_in(tmp_path) == {"new"}  # its parent is a user's choice; lab itself is gone


@pytest.mark.vgg
def test_stats_interrupted_while_writing_leaves_no_folder(capsys, tmp_path, monkeypatch) -> None:
    import normstyle.statistics.report as report

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(images / "a.png")

    def interrupted(items):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "atomic_write_many", interrupted)
    out = tmp_path / "r"
    code = main(
        ["stats", "--images", str(images), "--short-side", "32", "--no-progress", "-o", str(out)]
    )
    assert code == 130 and not out.exists()
    capsys.readouterr()


@pytest.mark.vgg
def test_stats_names_and_does_not_count_skipped_images(capsys, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(images / "good.png")
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "r"
    assert main(["stats", "--images", str(images), "--short-side", "32", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped: " in printed and "bad.jpg" in printed
    meta = json.loads((out / "stats.json").read_text())
    assert meta["images"] == 1 and meta["skipped"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--style-layers", "relu1_1:0", "--content-weight", "0"], "nothing to optimise"),
        (["--iterations", "99999999999999999999"], "more than 1,000,000 iterations"),
    ],
)
def test_options_that_cannot_mean_anything(capsys, tmp_path: Path, args, message) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(tmp_path / "o.png")]
    run_clean(capsys, tmp_path, [*argv, "--size", "32", "--no-progress", *args], 2, message)


def test_the_output_may_not_overwrite_an_input(capsys, tmp_path: Path, photo: Path) -> None:
    before = photo.read_bytes()
    argv = ["stylize", str(photo), "builtin:swirls", "-o", str(photo), *TINY]
    run_clean(capsys, tmp_path, argv, 2, "is one of the input images")
    assert photo.read_bytes() == before


def test_folder_tools_refuse_a_size_no_image_could_have(capsys, tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    argv = ["stats", "--images", str(tmp_path), "-o", str(tmp_path / "r"), "--short-side", "100000"]
    run_clean(capsys, tmp_path, argv, 2, "--short-side 100000: a 100000×100000 px image alone")


def test_empty_names_are_not_the_current_folder(capsys, tmp_path: Path) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls"]
    run_clean(capsys, tmp_path, [*argv, "-o", "", *TINY], 2, "the output file name is empty")
    out = str(tmp_path / "o.png")
    run_clean(capsys, tmp_path, [*argv, "-o", out, "--init", "", *TINY], 1, "file name is empty")


# --- a second independent hostile review (of the layout commit's parent) -------------------


@pytest.mark.slow
def test_a_closed_stdout_is_no_traceback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "normstyle", "weights", "list"]
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command],
        cwd=tmp_path,
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_normalize_may_not_overwrite_its_input_weights(capsys, tmp_path: Path) -> None:
    net = weights_file(tmp_path / "net.safetensors")
    before = net.read_bytes()
    argv = ["normalize", "--weights", str(net), "--images", str(tmp_path), "-o", str(net)]
    run_clean(capsys, tmp_path, argv, 2, "would overwrite the input")
    assert net.read_bytes() == before


def test_empty_output_folders_are_refused(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    run_clean(capsys, tmp_path, ["stats", "--images", ".", "-o", ""], 2, "folder name is empty")
    run_clean(capsys, tmp_path, ["lab", "norms", "--tiny", "-o", ""], 2, "folder name is empty")


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [(torch.complex64, "complex64"), (torch.int32, "int32"), (torch.bool, "bool")],
)
def test_weights_that_are_not_real_numbers_are_refused(capsys, tmp_path, dtype, kind) -> None:
    net = weights_file(tmp_path / "w.safetensors", **{"conv1_1.weight": torch.ones(64, 3, 3, 3)})
    from safetensors.torch import load_file, save_file

    state = load_file(str(net))
    state["conv1_1.weight"] = state["conv1_1.weight"].to(dtype)
    save_file(state, str(net))
    run_clean(capsys, tmp_path, ["weights", "show", str(net)], 1, f"holds {kind} values")


def test_the_write_check_leaves_no_named_file(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from normstyle.io.files import check_target

    if not getattr(os, "O_TMPFILE", 0):
        pytest.skip("this system has no unnamed temporary files (O_TMPFILE)")

    def named(*args, **kwargs):
        raise AssertionError("a named probe file was created")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", named)
    assert check_target(tmp_path / "o.png") == tmp_path / "o.png"
    assert not list(tmp_path.iterdir())


def test_a_failed_lab_write_names_the_users_folder(capsys, tmp_path: Path, monkeypatch) -> None:
    from normstyle.errors import InputError
    from normstyle.lab import norms

    def full(figure, path, *args, **kwargs):
        raise InputError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(norms, "save_figure", full)
    out = tmp_path / "lab"
    err = run_clean(capsys, tmp_path, ["lab", "norms", "--tiny", "-o", str(out)], 1, "No space")
    assert f"{out}/norms.png: cannot write" in err and ".lab-" not in err


def test_progress_bars_end_before_a_message(capsys, tmp_path: Path) -> None:
    import io

    from tqdm.auto import tqdm

    bar = tqdm(total=5, file=io.StringIO())
    bar.update(1)
    argv = ["stylize", str(tmp_path / "missing.png"), "builtin:swirls", "-o", "o.png"]
    run_clean(capsys, tmp_path, argv, 1, "no such file")
    assert bar.disable  # closed: no redraw can follow the message


@pytest.mark.vgg
def test_no_progress_bar_where_stderr_is_not_a_terminal(capsys, tmp_path: Path) -> None:
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(tmp_path / "o.png")]
    assert main([*argv, "--size", "32", "--iterations", "2", "--seed", "1"]) == 0
    assert capsys.readouterr().err == ""  # captured stderr is no terminal: no bar lines


def test_stats_refuses_no_layers_and_a_report_inside_its_images(capsys, tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    argv = ["stats", "--images", str(tmp_path)]
    run_clean(capsys, tmp_path, [*argv, "--layers", " , ", "-o", "r"], 2, "names no layer")
    run_clean(capsys, tmp_path, [*argv, "-o", str(tmp_path)], 2, "is the --images folder")


def test_means_without_compare_is_refused(capsys, tmp_path: Path) -> None:
    argv = ["normalize", "--images", str(tmp_path), "--means", "m.json", "-o", "n.safetensors"]
    run_clean(capsys, tmp_path, argv, 2, "--means goes with --compare")


def test_huge_blend_weights_are_the_same_blend() -> None:
    from normstyle.style.targets import blend_weights

    assert blend_weights([1e308, 1e308], 2) == [0.5, 0.5]
    assert blend_weights([3.0, 1.0], 2) == [0.75, 0.25]


def test_a_dangling_link_at_an_intermediate_name_is_not_replaced(capsys, tmp_path: Path) -> None:
    (tmp_path / "out_1.png").symlink_to(tmp_path / "nowhere" / "x")
    argv = ["stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(tmp_path / "out.png")]
    argv += ["--size", "64", "--iterations", "3", "--save-every", "1", "--no-progress"]
    run_clean(capsys, tmp_path, argv, 2, "out_1.png exists")
    assert (tmp_path / "out_1.png").is_symlink()
