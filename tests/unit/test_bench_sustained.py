"""E1's flatness test: a sawtooth backlog whose troughs stay level is sustained; rising troughs are not."""

from __future__ import annotations

from pipelines.bench.sustained import slope, trough_growth


def sawtooth(period: int, peak: int, drift_per_s: float, seconds: int = 60) -> list[tuple[float, float]]:
    """Backlog sampled every 2 s: climbs to `peak` over each period, drops to the trough, trough drifts."""
    return [(float(t), (t % period) / period * peak + drift_per_s * t) for t in range(0, seconds + 1, 2)]


def test_level_troughs_are_flat_even_when_a_sawtooth_tilts_the_least_squares_slope():
    points = sawtooth(period=16, peak=3000, drift_per_s=0)
    grew, seconds = trough_growth(points, 20)
    assert grew == 0
    assert seconds == 40
    assert abs(slope(points)) > 0  # what the old criterion tripped on


def test_rising_troughs_show_as_growth():
    points = sawtooth(period=10, peak=3000, drift_per_s=50)
    grew, seconds = trough_growth(points, 20)
    assert grew == 50 * 40
    assert seconds == 40
