"""open_sources: one line per bad device while the others start, unique names, calibration, start failures."""

from __future__ import annotations


import numpy as np
import pytest

from devices.base import Chunk, DeviceError, SourceBase
from devices.session import SessionWriter
from emulation_devices import Collector
from mmg_live.sources import DeviceConfig, OpenedSource, device_error, open_sources


@pytest.fixture
def imu_session(tmp_path):
    """A 1 s session holding one 50 Hz IMU stream named ``imu``."""
    folder = tmp_path / "session"
    with SessionWriter(folder) as w:
        w.write(Chunk("imu", 10.0 + np.arange(50) / 50, np.zeros((50, 6), np.float32)))
    return folder


def stop_all(opened: list[OpenedSource]) -> None:
    for o in opened:
        o.source.stop()


def test_bad_device_is_one_line_naming_it_and_the_others_start(imu_session, tmp_path):
    missing = tmp_path / "no_such_camera.mp4"
    seen: list[str] = []
    result = open_sources(DeviceConfig(camera=str(missing), replay=str(imu_session), speed=4.0),
                          on_message=seen.append)
    try:
        assert len(result.messages) == 1 and seen == result.messages
        assert str(missing) in result.messages[0] and "\n" not in result.messages[0]
        assert [(o.label, o.source.name) for o in result.started] == [(f"replay {imu_session}", "imu")]
        assert result.started[0].started_at is not None
        assert [o.label for o, _ in result.not_started] == [f"camera {missing}"]  # built, failed to start
    finally:
        stop_all(result.started)
    # a device that fails before it is built (not a session folder) is reported the same way
    nowhere = tmp_path / "nowhere"
    result = open_sources(DeviceConfig(replay=str(nowhere)))
    assert result.started == [] and result.not_started == []
    assert len(result.messages) == 1 and result.messages[0].startswith(f"replay {nowhere}: ")


class FakeImu(SourceBase):
    """An IMU that emits one fixed chunk when started, or fails to start."""

    modality = "imu"

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name)
        self.fail = fail

    def start(self) -> None:
        if self.fail:
            raise DeviceError(f"fake {self.name}: unplugged")
        self._emit(Chunk("imu", np.array([1.0, 1.01]), np.zeros((2, 6), np.float32), self.name))

    def stop(self) -> None:
        pass


def test_unique_names_calibration_hook_and_start_failures(monkeypatch):
    """Three IMUs named alike: renamed, calibrated by their new names, subscribed before start;
    the one whose start() raises is reported and left out of the started list."""
    from calibration.profile import CalibrationProfile, ImuCalibration

    import mmg_live.sources as sources

    fakes = [FakeImu("imu"), FakeImu("imu"), FakeImu("imu", fail=True)]
    monkeypatch.setattr(sources, "device_factories",
                        lambda config: [sources.SourceFactory("fake imus", lambda: list(fakes))])
    profile = CalibrationProfile(imu={"imu_2": ImuCalibration(gyro_bias=np.array([1.0, -2.0, 3.0])),
                                      "wrist": ImuCalibration(gyro_bias=np.array([5.0, 5.0, 5.0]))})
    got: dict[str, Collector] = {}

    def before_start(built: list[OpenedSource]) -> None:
        assert all(o.started_at is None for o in built)
        for o in built:
            got[o.source.name] = Collector()
            o.source.subscribe(got[o.source.name])

    result = open_sources(DeviceConfig(), profile, before_start=before_start)
    assert [o.source.name for o in result.started] == ["imu", "imu_2"]
    assert sorted(got) == ["imu", "imu_2", "imu_3"]
    assert result.messages == ["fake imu_3: unplugged"]
    assert [(o.source.name, str(exc)) for o, exc in result.not_started] == [("imu_3", "fake imu_3: unplugged")]
    assert got["imu"].wait(1) and got["imu_2"].wait(1) and not got["imu_3"].chunks
    np.testing.assert_allclose(got["imu"].chunks[0].data[:, 3:], 0.0)  # the profile has no entry for "imu"
    np.testing.assert_allclose(got["imu_2"].chunks[0].data[:, 3:], -np.array([[1.0, -2.0, 3.0]] * 2))


def test_device_error_names_the_device_once():
    assert device_error("camera 7", DeviceError("camera 7: cannot open")) == "camera 7: cannot open"
    assert device_error("replay x", RuntimeError("bad\n  folder")) == "replay x: bad folder"
