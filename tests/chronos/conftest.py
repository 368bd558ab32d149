"""Fixtures for the Chronos provider tests (helpers live in ``helpers.chronoskit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from helpers.chronoskit import chronos_config, make_ctx, write_auth, write_config

from hermes_cron.clock import Clock
from hermes_cron.context import CronContext


@pytest.fixture
def chronos_home(home: Path) -> Path:
    """A home with Chronos configured and a fresh Nous login."""
    write_config(home, chronos_config())
    write_auth(home)
    return home


@pytest.fixture
def ctx(chronos_home: Path, clock: Clock) -> Iterator[CronContext]:
    """A service context on ``chronos_home`` with Chronos active."""
    context = make_ctx(chronos_home, clock, chronos_config())
    yield context
    state = context.state.get("chronos")
    if state is not None:
        state.client.close()
