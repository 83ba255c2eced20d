"""Shared fixtures. Real-data tests find ../shared/data through NORMSTYLE_DATA (default: the
folder beside the repository) and are skipped where it does not exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("NORMSTYLE_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set NORMSTYLE_DATA)")
    return path


@pytest.fixture(scope="session")
def caffe_state() -> dict[str, torch.Tensor]:
    from normstyle.registry import get_weights

    return get_weights("vgg19-caffe").load_state_dict()


@pytest.fixture(autouse=True, scope="session")
def _tuning_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Kernel timings (runtime/tuning.py) go to a folder of the session's, never the user's
    cache; subprocesses inherit it."""
    os.environ["NORMSTYLE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
