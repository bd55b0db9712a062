"""The simulator build cache: old builds are deleted, recent and busy ones are kept."""

import fcntl
import os

import pytest

from ffacc.sim.cocotb_run import prune_builds

HOUR = 3600


def _builds(folder, ages, now):
    """Build folders ``b0``, ``b1``, ... last used ``ages[i]`` seconds before ``now``."""
    for i, age in enumerate(ages):
        d = folder / f"b{i}"
        (d / "obj_dir").mkdir(parents=True)
        (d / "obj_dir" / "Vtop").write_bytes(b"x" * 100)
        (d / ".used").touch()
        os.utime(d / ".used", (now - age, now - age))


def test_the_least_recently_used_builds_older_than_an_hour_go(tmp_path):
    now = 1e9
    _builds(tmp_path, [5 * HOUR, 10, 3 * HOUR, 2 * HOUR, 2, HOUR / 2], now)
    # the 2 most recent (b4, b1) stay; of the rest, those used within the hour (b5) stay too
    assert sorted(prune_builds(tmp_path, keep=2, now=now)) == ["b0", "b2", "b3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b1", "b4", "b5"]
    assert prune_builds(tmp_path, keep=2, now=now) == []
    # with keep = 0 only the age protects a build
    assert prune_builds(tmp_path, keep=0, now=now + 0.6 * HOUR) == ["b5"]


def test_a_build_that_another_process_holds_is_kept(tmp_path):
    now = 1e9
    _builds(tmp_path, [3 * HOUR, 4 * HOUR], now)
    with open(tmp_path / "b1" / "build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # flock locks are per open file: this one, opened apart, stands for another process
        assert prune_builds(tmp_path, keep=0, now=now) == ["b0"]
    assert prune_builds(tmp_path, keep=0, now=now) == ["b1"]


def test_the_count_comes_from_the_environment(tmp_path, monkeypatch):
    now = 1e9
    _builds(tmp_path, [3 * HOUR, 4 * HOUR, 5 * HOUR], now)
    monkeypatch.setenv("FFACC_BUILD_KEEP", "1")
    assert sorted(prune_builds(tmp_path, now=now)) == ["b1", "b2"]
    monkeypatch.setenv("FFACC_BUILD_KEEP", "-1")
    with pytest.raises(ValueError, match="FFACC_BUILD_KEEP"):
        prune_builds(tmp_path, now=now)
    assert prune_builds(tmp_path / "none", keep=0, now=now) == []
