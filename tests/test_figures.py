"""Figures never switch the user's matplotlib backend nor leave pyplot figures open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")  # what a user chose, e.g. in a notebook
from normstyle.statistics.report import LayerSummary, write_report
row = LayerSummary("relu1", 2, 10, 0.5, 0.2, 0.1, 0, 0.4, 0.5, 0.6, [0.4, 0.6])
write_report({"net": [row]}, sys.argv[1], {})
from normstyle.lab import norms
norms.run(__import__("pathlib").Path(sys.argv[1]), tiny=True)
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


@pytest.mark.slow
def test_figures_leave_the_backend_alone(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    for name in ("channel_means.png", "zero_fraction.png", "norms.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
