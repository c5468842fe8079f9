"""Shared fixtures: the real-recordings folder, with skip-or-fail when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmg_live.paths import data_root

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """``mmg_live.cli.main`` sets the process's torch threads for inference, as the app must; a
    test that calls it in-process must not slow the tests after it."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _private_clip_cache(tmp_path_factory: pytest.TempPathFactory):
    """Commands under test cache decoded clips in a folder of the test session, not the user's."""
    old = os.environ.get("MMG_CACHE")
    os.environ["MMG_CACHE"] = str(tmp_path_factory.mktemp("clip-cache"))
    yield
    if old is None:
        os.environ.pop("MMG_CACHE", None)
    else:
        os.environ["MMG_CACHE"] = old


def _require_data() -> bool:
    return os.environ.get("MMG_REQUIRE_DATA", "") == "1"


@pytest.fixture(scope="session")
def mmg_data() -> Path:
    """Root of the real recordings; skips (or fails under MMG_REQUIRE_DATA=1) when absent."""
    root = data_root()
    if root is None:
        reason = "real recordings not found: set MMG_DATA or place them at ../shared/data"
        if _require_data():
            pytest.fail(reason + " (MMG_REQUIRE_DATA=1)")
        pytest.skip(reason)
    return root


def _subdir(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_dir():
        reason = f"{path} is missing"
        if _require_data():
            pytest.fail(reason + " (MMG_REQUIRE_DATA=1)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def utd_mhad_dir(mmg_data: Path) -> Path:
    """The UTD-MHAD folder (Depth/, Inertial/, Skeleton/)."""
    return _subdir(mmg_data, "utd-mhad")


@pytest.fixture(scope="session")
def fsdd_dir(mmg_data: Path) -> Path:
    """The FSDD folder (recordings/*.wav)."""
    return _subdir(mmg_data, "fsdd")
