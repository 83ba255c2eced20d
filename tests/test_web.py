"""``normstyle serve`` as people use it: the HTTP API with a real server on a free loopback port,
a load test of 20 concurrent submissions against a queue of 8, and (marker ``browser``) the page
driven in Debian's headless Chromium through Playwright — upload, live preview, download,
cancel, a bad file — with every request the page makes checked to stay on this machine."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "fastapi", reason="the web extra is not installed: pip install 'normstyle[web]'"
)
httpx = pytest.importorskip("httpx", reason="httpx is not installed (the test extra)")

from normstyle.errors import OptionError  # noqa: E402
from normstyle.web import serve  # noqa: E402

pytestmark = pytest.mark.timeout(300)


SENT = {"X-Normstyle": "1"}  # what the page sends with every request that changes something


def png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[: height // 2] //= 2  # some structure
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    handle = serve(port=0, max_size=256, queue=8)
    try:
        yield handle.url
    finally:
        handle.stop()


def submit(url: str, iterations: int = 5, size: int = 64, **extra: object) -> httpx.Response:
    files = [("content", ("photo.png", png(80, 60, 1), "image/png"))]
    files.append(("styles", ("painting.png", png(60, 60, 2), "image/png")))
    data = {"size": str(size), "iterations": str(iterations), **extra}
    return httpx.post(url + "jobs", files=files, data=data, timeout=30, headers=SENT)


def wait_until_ended(url: str, job: str, timeout: float = 120) -> dict:
    last: dict = {}
    with httpx.stream("GET", f"{url}jobs/{job}/events", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])
                if last["state"] in ("done", "failed", "cancelled"):
                    return last
    return last


def test_the_page_is_one_file_with_nothing_from_elsewhere(server: str) -> None:
    page = httpx.get(server, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script src" not in page.text and "<link" not in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_a_run_through_the_api_gives_a_png_with_its_settings(server: str) -> None:
    answer = submit(server, iterations=4, preserve_colors="luminance")
    assert answer.status_code == 202, answer.text
    job = answer.json()["id"]
    final = wait_until_ended(server, job)
    assert final["state"] == "done", final
    assert final["iteration"] == 4
    result = httpx.get(f"{server}jobs/{job}/result.png", timeout=10)
    assert result.status_code == 200
    assert "attachment" in result.headers["content-disposition"]
    image = Image.open(io.BytesIO(result.content))
    assert image.format == "PNG" and max(image.size) == 64
    settings = json.loads(image.info["normstyle"])
    assert settings["size"] == 64 and settings["preserve_colors"] == "luminance"
    assert image.info["command"].startswith("normstyle stylize photo.png painting.png -o ")
    assert f"--seed {settings['seed']}" in image.info["command"]
    httpx.delete(f"{server}jobs/{job}", timeout=10, headers=SENT)
    assert httpx.get(f"{server}jobs/{job}/result.png", timeout=10).status_code == 404  # dropped


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        ([("content", ("notes.png", b"not an image at all", "image/png"))], {}, "not an image"),
        ([], {"content_builtin": "grace_hopper"}, "choose at least one style image"),
        (
            [],
            {"content_builtin": "grace_hopper", "style_builtins": "swirls", "size": "5000"},
            "from 32 to 256",
        ),
        (
            [],
            {"content_builtin": "grace_hopper", "style_builtins": "swirls", "size": "64"}
            | {"iterations": "x"},
            "iterations",
        ),
    ],
)
def test_bad_forms_get_one_line_and_the_server_keeps_serving(server, files, data, message) -> None:
    if files and files[0][0] == "content":
        files = [*files, ("styles", ("s.png", png(40, 40, 3), "image/png"))]
    answer = httpx.post(server + "jobs", files=files or None, data=data, timeout=30, headers=SENT)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error
    assert httpx.get(server + "health", timeout=10).status_code == 200


def test_a_cancelled_run_ends_at_once_and_frees_the_queue(server: str) -> None:
    answer = submit(server, iterations=2000)
    job = answer.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = httpx.get(server + "health", timeout=10).json()
        events = httpx.post(f"{server}jobs/{job}/cancel", timeout=10, headers=SENT).json()
        if events["state"] in ("running", "cancelled"):
            break
    final = wait_until_ended(server, job, timeout=30)
    assert final["state"] == "cancelled" and final["iteration"] < 2000
    assert httpx.get(server + "health", timeout=10).json()["active"] == 0
    del state


def test_the_event_stream_ends_on_the_state_it_sent() -> None:
    """A run that ends just after the stream took its snapshot: the stream still sends the end
    (it used to stop on the job's new state after sending the old one, so the page's last word
    was "running" — seen as a flaky cancel test)."""
    from fastapi.testclient import TestClient

    from normstyle.web.app import create_app
    from normstyle.web.form import Settings
    from normstyle.web.jobs import Job, JobQueue

    class EndsJustAfterASnapshot(Job):
        def snapshot(self) -> dict:
            taken = super().snapshot()
            if self.state == "running":  # the worker cancels it right after the read
                self.state, self.message = "cancelled", "cancelled"
                self.version += 1
            return taken

    jobs = JobQueue()
    try:
        job = EndsJustAfterASnapshot(run=None, settings={}, command="", preview=None)
        job.state = "running"
        jobs.jobs[job.id] = job
        client = TestClient(create_app(Settings(), jobs), base_url="http://127.0.0.1")
        with client.stream("GET", f"/jobs/{job.id}/events") as stream:
            states = [
                json.loads(line[6:])["state"]
                for line in stream.iter_lines()
                if line.startswith("data: ")
            ]
        assert states == ["running", "cancelled"]
    finally:
        jobs.close()


def test_a_port_in_use_is_one_line() -> None:
    handle = serve(port=0)
    try:
        port = int(handle.url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(OptionError, match="already in use") as refused:
            serve(port=port)
        assert "\n" not in str(refused.value)
    finally:
        handle.stop()


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_twenty_concurrent_submissions_against_a_queue_of_eight() -> None:
    """8 are admitted and finish, 12 are told the server is busy; memory stays bounded."""
    handle = serve(port=0, max_size=128, queue=8)
    try:
        submit(handle.url, iterations=1).raise_for_status()  # warm the network up first
        time.sleep(3)
        before = _rss()
        barrier = threading.Barrier(20)
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def one() -> None:
            barrier.wait()
            answer = submit(handle.url, iterations=30)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        accepted = [a for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code == 503]
        assert (len(accepted), len(refused)) == (8, 12), [a.status_code for a in answers]
        assert all("busy" in a.json()["error"] for a in refused)
        for answer in accepted:
            assert wait_until_ended(handle.url, answer.json()["id"])["state"] == "done"
        assert httpx.get(handle.url + "health", timeout=10).json()["active"] == 0
        assert _rss() - before < 600e6  # eight 64 px runs' results, not a leak
    finally:
        handle.stop()


@pytest.mark.slow
def test_the_command_answers_on_its_port_and_says_where() -> None:
    probe = serve(port=0)
    port = int(probe.url.rsplit(":", 1)[1].strip("/"))
    probe.stop()
    command = [sys.executable, "-m", "normstyle", "serve", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200
    finally:
        process.terminate()
        out, err = process.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/" in out
    assert process.returncode == 0 and "stopped" in err and "Traceback" not in err


# --- in a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the test extra)"
    )
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: apt-get install chromium (make test installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_a_person_stylises_downloads_cancels_and_sends_a_bad_file(
    browser, server: str, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server)
    (tmp_path / "photo.png").write_bytes(png(120, 90, 5))
    (tmp_path / "painting.png").write_bytes(png(90, 90, 6))
    page.set_input_files("#content-file", str(tmp_path / "photo.png"))
    page.set_input_files("#style-files", str(tmp_path / "painting.png"))
    page.fill("#size", "64")
    page.fill("#iterations", "60")
    page.click("#start")
    # At least one live preview while the run is going, then the finished image.
    page.wait_for_function("Number(document.getElementById('preview').dataset.version || 0) >= 1")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    assert page.is_enabled("#start") and not page.is_enabled("#cancel")
    command = page.input_value("#command")
    assert command.startswith("normstyle stylize photo.png painting.png")
    with page.expect_download() as download:
        page.click("#download")
    image = Image.open(download.value.path())
    assert image.format == "PNG" and max(image.size) == 64
    # A long run, cancelled: the page recovers.
    page.fill("#iterations", "2000")
    page.click("#start")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Iteration')")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('status').textContent === 'Cancelled.'")
    assert page.is_enabled("#start")
    # A file that is not an image: one line on the page, and the page still works.
    (tmp_path / "notes.png").write_text("certainly not a picture")
    page.set_input_files("#content-file", str(tmp_path / "notes.png"))
    page.click("#start")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    error = page.text_content("#error") or ""
    assert "not an image" in error and "\n" not in error
    assert page.is_enabled("#start")
    # Nothing was fetched from anywhere but this server.
    assert requests and all(url.startswith(server) for url in requests), requests
    page.close()


@pytest.mark.browser
def test_a_picture_of_the_page_mid_run(browser, server: str, tmp_path: Path) -> None:
    """The page photographed while the image forms. ``make web-screenshot`` sets
    NORMSTYLE_SCREENSHOT=docs/web.png: the README's picture, at 256 px and well into the
    full-size level; otherwise a small run into a temporary file."""
    target = os.environ.get("NORMSTYLE_SCREENSHOT")
    page = browser.new_page(viewport={"width": 1180, "height": 760})
    page.goto(server)
    page.fill("#size", "256" if target else "96")
    page.click("#start")
    # For the README: after the 100 half-size iterations, the image half formed.
    reached = 170 if target else 5
    page.wait_for_function(
        "Number((document.getElementById('status').textContent.match(/Iteration (\\d+)/)"
        f" || [0, 0])[1]) >= {reached}",
        timeout=120_000,
    )
    page.evaluate("window.scrollTo(0, 0)")
    path = Path(target) if target else tmp_path / "web.png"
    page.screenshot(path=str(path))
    assert Image.open(path).size == (1180, 760)
    page.click("#cancel")
    page.wait_for_function("document.getElementById('status').textContent === 'Cancelled.'")
    page.close()


def test_without_the_web_extra_serve_says_how_to_install_it(monkeypatch) -> None:
    from normstyle.web import require_web

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    with pytest.raises(OptionError, match=r"pip install 'normstyle\[web\]'") as refused:
        require_web()
    assert "\n" not in str(refused.value)


def test_requests_from_other_sites_are_refused(server: str) -> None:
    """A form another site's page posts cannot carry the page's header without asking first
    (CORS), and a rebound host name is not answered."""
    files = [("content", ("photo.png", png(80, 60, 1), "image/png"))]
    assert httpx.post(server + "jobs", files=files, timeout=10).status_code == 403
    assert httpx.delete(server + "jobs/x", timeout=10).status_code == 403
    rebound = httpx.get(server, headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 421 and "loopback" in rebound.json()["error"]


def test_a_body_past_the_limit_is_cut_off_as_it_streams(server: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
        block = b"\0" * (1 << 20)
        for _ in range(200):
            yield block

    headers = {**SENT, "Content-Type": "multipart/form-data; boundary=x"}
    answer = httpx.post(server + "jobs", content=chunks(), headers=headers, timeout=60)
    assert answer.status_code in (413, 400)
    assert httpx.get(server + "health", timeout=10).status_code == 200


def test_uploads_are_shrunk_to_twice_the_largest_output() -> None:
    from normstyle.web.form import Settings, _picture

    buffer = io.BytesIO()
    Image.new("RGB", (3000, 1000), (10, 20, 30)).save(buffer, format="PNG")
    array = _picture(("big.png", buffer.getvalue()), Settings(max_size=256))
    assert array.shape == (171, 512, 3)


def test_odd_file_names_make_a_command_line_that_works() -> None:
    from normstyle.web.form import _safe

    assert _safe("-rf.png") == "./-rf.png"
    assert _safe("../../etc/passwd") == "passwd"
    assert _safe('a "b"\n.png') == "a__b__.png"


@pytest.mark.parametrize("port", ["99999", "-5", "http"])
def test_a_bad_port_is_a_usage_error(port: str, capsys) -> None:
    from normstyle.cli import main

    assert main(["serve", "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert "--port" in err and len(err.splitlines()) == 1
