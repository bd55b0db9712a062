import os

import pytest

from ffacc.sim.cocotb_run import available_simulators


def pytest_collection_modifyitems(config, items):
    """Where ``FFACC_REQUIRE_SIMULATORS`` lists a simulator (CI does), its absence fails."""
    required = [s for s in os.environ.get("FFACC_REQUIRE_SIMULATORS", "").split(",") if s]
    missing = [s for s in required if s not in available_simulators()]
    if missing:
        raise pytest.UsageError(f"required simulator(s) not installed: {', '.join(missing)}")
