"""``normstyle batch``: manifests checked line by line, globs, failures isolated, every outcome
recorded, reruns skipping what is done, an interrupted batch resumed, and (marker ``ray``) a real
local Ray cluster giving the same images as the local engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from normstyle.batch.manifest import jobs_from_globs, read_manifest
from normstyle.batch.runner import existing_hash
from normstyle.cli import main
from normstyle.errors import OptionError

pytestmark = pytest.mark.timeout(300)
TINY = {"size": 48, "iterations": 3}


def picture(path: Path, seed: int, size: tuple[int, int] = (60, 48)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    for number in range(3):
        picture(tmp_path / f"photo{number}.png", number)
        picture(tmp_path / f"art{number}.png", 10 + number)
    (tmp_path / "broken.png").write_text("not a picture at all")
    return tmp_path


def manifest(folder: Path, lines: list[object], name: str = "jobs.jsonl") -> Path:
    path = folder / name
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    )
    return path


def records(out: Path) -> dict[str, dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {record["name"]: record for record in map(json.loads, lines)}


def test_a_manifest_is_checked_line_by_line(folder: Path) -> None:
    path = manifest(
        folder,
        [
            {"content": "photo0.png", "style": "art0.png", **TINY},
            "{not json",
            {"content": "photo1.png"},
            {"content": "photo1.png", "style": "art1.png", "sise": 64},
            {"content": "photo1.png", "style": "art1.png", "iterations": -2},
            {
                "content": "photo1.png",
                "style": ["art1.png", "art2.png"],
                "name": "two",
                "style-weight": 5,
            },
            {"content": "photo2.png", "style": "art2.png", "name": "two"},
            "",
            "# a comment",
            {"content": "photo0.png", "style": "art0.png", "size": 32},
        ],
    )
    jobs, errors = read_manifest(path)
    assert [job.line for job in jobs] == [1, 6, 10]
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [
        (2, "not JSON"),
        (3, "'style' must be an image path or a list of them"),
        (4, "unknown option 'sise'"),
        (5, "iterations must be a positive integer or 'auto', got -2"),
        (7, "the name 'two' is used twice"),
    ]
    assert "did you mean 'size'" in errors[2].message
    first, second, third = jobs
    assert first.content == str(folder / "photo0.png") and first.name == "photo0__art0"
    assert second.name == "two" and second.options["style_weight"] == 5
    assert second.styles == [str(folder / "art1.png"), str(folder / "art2.png")]
    assert third.name == "photo0__art0_2"  # a made-up name that was taken gets a number
    assert first.options["seed"] == read_manifest(path)[0][0].options["seed"]  # deterministic


def test_globs_make_every_pair_or_the_nth_with_the_nth(folder: Path) -> None:
    every = jobs_from_globs(str(folder / "photo*.png"), str(folder / "art*.png"), defaults=TINY)
    assert len(every) == 9 and len({job.name for job in every}) == 9
    paired = jobs_from_globs(str(folder / "photo*.png"), str(folder / "art*.png"), pair=True)
    assert [Path(j.content).name + "+" + Path(j.styles[0]).name for j in paired] == [
        "photo0.png+art0.png",
        "photo1.png+art1.png",
        "photo2.png+art2.png",
    ]
    with pytest.raises(OptionError, match="no file matches"):
        jobs_from_globs(str(folder / "nothing*.png"), str(folder / "art*.png"))
    with pytest.raises(OptionError, match="as many contents as styles"):
        jobs_from_globs(str(folder / "photo*.png"), str(folder / "art0.png"), pair=True)


def test_a_bad_job_fails_alone_and_a_rerun_skips_what_is_done(folder: Path, capsys) -> None:
    path = manifest(
        folder,
        [
            {"content": "photo0.png", "style": "art0.png", **TINY},
            {"content": "broken.png", "style": "art1.png", **TINY},
            {"content": "photo2.png", "style": "art2.png", "name": "third", **TINY},
        ],
    )
    out = folder / "out"
    assert main(["batch", str(path), "-o", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "2 done, 1 failed, 0 skipped" in captured.out
    assert "broken__art1: broken.png" not in captured.err  # the path is named in full
    assert "not an image" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in out.glob("*.png")) == ["photo0__art0.png", "third.png"]
    first = records(out)
    assert (
        first["broken__art1"]["status"] == "failed"
        and "not an image" in first["broken__art1"]["error"]
    )
    for name in ("photo0__art0", "third"):
        record = first[name]
        assert record["status"] == "done" and record["loss"] > 0 and record["seconds"] > 0
        assert existing_hash(out / f"{name}.png") == record["settings_hash"]
        assert max(Image.open(out / f"{name}.png").size) == 48
    stamp = (out / "third.png").stat().st_mtime_ns
    # A rerun: the done jobs are skipped (their files untouched), the broken one fails again.
    assert main(["batch", str(path), "-o", str(out), "--no-progress"]) == 1
    assert "0 done, 1 failed, 2 skipped" in capsys.readouterr().out
    assert (out / "third.png").stat().st_mtime_ns == stamp
    assert records(out)["third"]["status"] == "skipped"
    # A changed option (or input) is a new job: it runs again.
    manifest(
        folder,
        [
            {
                "content": "photo2.png",
                "style": "art2.png",
                "name": "third",
                "size": 40,
                "iterations": 3,
            }
        ],
    )
    assert main(["batch", str(path), "-o", str(out), "--no-progress"]) == 0
    assert max(Image.open(out / "third.png").size) == 40
    # A changed input file, the same size and name, within the same process: run again too.
    picture(folder / "photo2.png", 99)
    assert main(["batch", str(path), "-o", str(out), "--no-progress"]) == 0
    assert "1 done, 0 failed, 0 skipped" in capsys.readouterr().out


def test_the_glob_shorthand_runs_from_the_command_line(folder: Path, capsys) -> None:
    out = folder / "globbed"
    argv = [
        "batch",
        "--content",
        str(folder / "photo[01].png"),
        "--style",
        str(folder / "art0.png"),
    ]
    assert main([*argv, "-o", str(out), "--size", "40", "--iterations", "2", "--no-progress"]) == 0
    assert "2 done, 0 failed" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["batch", "-o", "out"], "give a manifest, or --content and --style"),
        (["batch", "jobs.jsonl", "--content", "a*", "--style", "b*", "-o", "o"], "not both"),
        (["batch", "--content", "a*", "-o", "o"], "give both --content and --style"),
        (["batch", "jobs.jsonl", "--address", "x:1", "-o", "o"], "--address is for --engine ray"),
        (["batch", "missing.jsonl", "-o", "o"], "missing.jsonl"),
    ],
)
def test_bad_commands_are_one_line(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_without_ray_the_ray_engine_says_how_to_install_it(folder, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    path = manifest(folder, [{"content": "photo0.png", "style": "art0.png", **TINY}])
    assert main(["batch", str(path), "-o", str(folder / "o"), "--engine", "ray"]) == 2
    assert "pip install 'normstyle[ray]'" in capsys.readouterr().err


def test_jobs_are_handed_out_as_workers_free_up_not_all_at_once(folder: Path) -> None:
    # A batch of thousands must not read every input before the first job ends: the engine
    # draws payloads from the runner's generator only a few ahead of its workers.
    from normstyle.batch.engines import AHEAD, run_local
    from normstyle.batch.manifest import BatchJob
    from normstyle.batch.work import payload

    drawn = []
    path = manifest(folder, [{"content": "broken.png", "style": "art0.png", **TINY}])
    (job,), _ = read_manifest(path)
    assert isinstance(job, BatchJob)

    def payloads():
        for number in range(6):
            drawn.append(number)
            yield {**payload(job), "name": f"job{number}"}

    outcomes = run_local(payloads(), workers=1, threads=1)
    first = next(outcomes)
    assert len(drawn) == AHEAD  # one running, the next queued
    rest = list(outcomes)
    assert len(drawn) == 6
    names = sorted(o["record"]["name"] for o in [first, *rest])
    assert names == [f"job{n}" for n in range(6)]
    assert all("broken.png" in o["record"]["error"] for o in [first, *rest])


@pytest.mark.slow
def test_an_interrupted_batch_leaves_whole_files_and_resumes(folder: Path) -> None:
    path = manifest(
        folder,
        [
            {
                "content": f"photo{n % 3}.png",
                "style": f"art{n % 3}.png",
                "name": f"job{n}",
                "size": 64,
                "iterations": 40,
            }
            for n in range(6)
        ],
    )
    out = folder / "out"
    command = [
        sys.executable,
        "-m",
        "normstyle",
        "batch",
        str(path),
        "-o",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("job*.png")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "resumes the rest" in err and "Traceback" not in err
    finished = sorted(p.name for p in out.glob("job*.png"))
    assert 1 <= len(finished) < 6
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written file
    for name in finished:
        Image.open(out / name).load()  # complete PNGs
    done = {n for n, r in records(out).items() if r["status"] == "done"}
    assert {n + ".png" for n in done} == set(finished)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{6 - len(finished)} done, 0 failed, {len(finished)} skipped" in rerun.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_a_real_ray_cluster_gives_the_local_engines_images(folder: Path, capsys) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'normstyle[ray]'")
    path = manifest(
        folder,
        [
            {"content": "photo0.png", "style": "art0.png", **TINY},
            {"content": "broken.png", "style": "art1.png", **TINY},
            {"content": "photo2.png", "style": ["art1.png", "art2.png"], **TINY},
        ],
    )
    local, ray = folder / "local", folder / "ray"
    assert main(["batch", str(path), "-o", str(local), "--no-progress"]) == 1
    capsys.readouterr()
    assert main(["batch", str(path), "-o", str(ray), "--engine", "ray", "--no-progress"]) == 1
    said = capsys.readouterr().out
    assert "2 done, 1 failed" in said and "on a local Ray cluster" in said
    assert records(ray)["photo0__art0"]["engine"] == "ray"
    names = sorted(p.name for p in local.glob("*.png"))
    assert names == sorted(p.name for p in ray.glob("*.png")) and len(names) == 2
    for name in names:  # the same seeds, the same threads: the same pixels
        assert np.array_equal(
            np.asarray(Image.open(local / name)), np.asarray(Image.open(ray / name))
        )


def _ray_task_process(name: str) -> int | None:
    """The pid of a process whose title names the Ray task ``name`` (Ray retitles a worker
    process 'ray::<task>' while it runs one)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if title.startswith(f"ray::{name}"):
                return int(entry.name)
    return None


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_worker_killed_mid_job_is_retried_and_recorded(folder: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'normstyle[ray]'")
    job = {"content": "photo0.png", "style": "art0.png", "size": 96, "iterations": 400}
    path = manifest(folder, [{**job, "name": "long"}])
    out = folder / "out"
    command = [sys.executable, "-m", "normstyle", "batch", str(path), "-o", str(out)]
    process = subprocess.Popen(
        [*command, "--engine", "ray", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, worker = time.monotonic() + 120, None
        while time.monotonic() < deadline and worker is None:
            worker = _ray_task_process("execute")
            time.sleep(0.2)
        assert worker is not None, "no Ray worker running the job was found"
        time.sleep(3)  # well into the job
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    record = records(out)["long"]
    assert record["status"] == "done" and record["attempt"] == 2
    assert "1 done" in stdout and "1 retried after a worker died" in stdout
