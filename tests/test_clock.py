"""Device→host clock mapping and jitter smoothing on simulated clocks."""

from __future__ import annotations

import numpy as np
import pytest

from devices.clock import ClockFit, RateMeter, RateSmoother, host_now


def _simulated_device(seconds: float, rate: float, offset: float, drift_ppm: float, jitter_s: float, seed: int = 0):
    """True host acquisition times, device clock readings and jittered host receive times."""
    rng = np.random.default_rng(seed)
    t_true = 1000.0 + np.arange(int(seconds * rate)) / rate  # host clock at acquisition
    # The device clock runs drift_ppm slow relative to the host and reads t - offset.
    device = (t_true - offset) / (1.0 + drift_ppm * 1e-6)
    received = t_true + rng.uniform(0.0, jitter_s, size=t_true.size)
    return t_true, device, received


def test_fit_recovers_offset_and_drift_within_1ms_after_30s():
    t_true, device, received = _simulated_device(30.0, 200.0, offset=3.2, drift_ppm=50.0, jitter_s=0.004)
    fit = ClockFit()
    # Fed in batches of 4 lines, as a serial reader sees them.
    for i in range(0, device.size, 4):
        fit.update(device[i:i + 4], received[i:i + 4])
    errors = fit.to_host(device[-200:]) - t_true[-200:]
    assert np.max(np.abs(errors)) < 1e-3, f"max error {np.max(np.abs(errors)) * 1e3:.3f} ms"
    assert fit.drift_ppm == pytest.approx(50.0, abs=10.0)
    # offset is host - device at the newest device time: 3.2 s plus the drift's share.
    expected_offset = t_true[-1] - device[-1]
    assert fit.offset == pytest.approx(expected_offset, abs=1e-3)
    # Raw receive times are off by up to 4 ms: the fit must beat them clearly.
    assert np.median(np.abs(errors)) < np.median(received[-200:] - t_true[-200:]) / 4


def test_fit_ignores_a_burst_of_delayed_samples():
    t_true, device, received = _simulated_device(20.0, 200.0, offset=-5.0, drift_ppm=-30.0, jitter_s=0.002, seed=1)
    received[1000:1400] += 0.05  # 2 s of 50 ms extra latency (a busy USB hub)
    fit = ClockFit()
    stamped = np.concatenate([fit.stamp(device[i:i + 10], received[i:i + 10]) for i in range(0, device.size, 10)])
    assert np.max(np.abs(stamped[-400:] - t_true[-400:])) < 1e-3
    assert np.all(stamped <= received)  # never later than arrival
    assert fit.resets == 0


def test_fit_restarts_when_the_device_clock_jumps():
    t_true, device, received = _simulated_device(10.0, 100.0, offset=2.0, drift_ppm=0.0, jitter_s=0.001, seed=2)
    device[500:] -= 1234.0  # the device rebooted: its clock starts over
    device[300] += 50.0  # one corrupted timestamp: an outlier, not a reboot
    fit = ClockFit()
    for i in range(0, device.size, 5):
        fit.update(device[i:i + 5], received[i:i + 5])
        if i == 495:
            assert fit.resets == 0 and fit.outliers == 1
    assert fit.resets == 1
    assert np.max(np.abs(fit.to_host(device[-50:]) - t_true[-50:])) < 1e-3


def test_fit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window_s"):
        ClockFit(window_s=0.5, bucket_s=0.5)
    fit = ClockFit()
    with pytest.raises(ValueError, match="2 device times for 1 host"):
        fit.update(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(RuntimeError, match="no observation"):
        fit.to_host(1.0)


def test_rate_smoother_removes_batching_jitter():
    rate = 200.0
    rng = np.random.default_rng(3)
    t_true = 50.0 + np.arange(2000) / rate
    # Lines arrive in bursts: each read returns 1-6 lines, received 0-3 ms after the last one.
    out, truth, i = [], [], 0
    sm = RateSmoother(rate)
    while i < t_true.size:
        n = int(rng.integers(1, 7))
        batch = t_true[i:i + n]
        out.append(sm.stamp(batch.size, float(batch[-1] + rng.uniform(0, 0.003))))
        truth.append(batch)
        i += n
    ts, truth_ts = np.concatenate(out), np.concatenate(truth)
    assert ts.size == t_true.size
    assert np.all(np.diff(ts) > 0)
    late = ts[-500:] - truth_ts[-500:]
    assert np.max(np.abs(late)) < 1e-3
    assert np.median(np.diff(ts[-500:])) == pytest.approx(1 / rate, abs=2e-5)
    assert sm.gaps == 0


def test_rate_smoother_tracks_a_slow_device_and_reports_gaps():
    nominal, actual = 100.0, 98.0  # the device runs 2 % slow
    t = 10.0 + np.arange(1500) / actual
    t[1000:] += 0.5  # half a second of nothing (cable wiggle)
    sm = RateSmoother(nominal)
    ts = np.concatenate([sm.stamp(1, float(x + 0.0005)) for x in t])
    assert sm.gaps == 1
    assert sm.last_gap_s == pytest.approx(0.5 + 1 / actual, abs=0.02)
    assert np.max(np.abs(ts[900:1000] - t[900:1000])) < 1.5e-3
    assert np.max(np.abs(ts[-100:] - t[-100:])) < 1.5e-3
    assert sm.drift_ppm == pytest.approx((nominal / actual - 1) * 1e6, rel=0.1)


def test_rate_meter_and_host_now():
    m = RateMeter(window_s=1.0)
    for k in range(300):
        m.add(k / 100.0)
    assert m.rate() == pytest.approx(100.0, rel=0.01)
    a = host_now()
    assert host_now() >= a


def test_rate_smoother_walks_onto_a_lower_line_without_jumps():
    rate, block = 1000.0, 10
    t = 20.0 + np.arange(6000) / rate
    sm = RateSmoother(rate)
    out, recv = [], []
    for i in range(0, t.size, block):
        delay = 0.005 if i < 1000 else 0.0  # deliveries get 5 ms faster after 1 s
        r = float(t[i + block - 1] + delay)
        out.append(sm.stamp(block, r))
        recv.append(np.full(block, r))
    ts, recv = np.concatenate(out), np.concatenate(recv)
    d = np.diff(ts)
    assert np.all(ts <= recv)  # never after arrival
    assert d.min() > 0.4 / rate and d.max() < 1.15 / rate  # walked, not jumped or squeezed
    err = ts - t
    assert err.min() > -0.006 and err.max() <= 0.005 + 1e-9  # bounded while it re-learns
    assert np.max(np.abs(err[4000:])) < 1e-4  # settled on the truth within 3 s
    assert sm.gaps == 0
