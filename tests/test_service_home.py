"""A service built on an explicit home reads that home's files, not ``$HERMES_HOME``'s."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.chronoskit import chronos_config, write_auth, write_config

from hermes_cron.config import HOME_KEY, load_config
from hermes_cron.service import CronService


def test_load_config_records_its_home(home: Path) -> None:
    assert load_config(home)[HOME_KEY] == str(home)


@pytest.mark.usefixtures("no_sockets")
def test_chronos_availability_reads_auth_beside_the_service_home(
    tmp_path: Path, home: Path
) -> None:
    # $HERMES_HOME (the `home` fixture) has no login; the service's own home has one.
    other = tmp_path / "agent-home"
    other.mkdir()
    write_config(other, chronos_config())
    write_auth(other)
    service = CronService.from_home(other)
    assert service.scheduler.name == "chronos", service.scheduler.fallback_reason
    assert service.config[HOME_KEY] == str(other)


@pytest.mark.usefixtures("no_sockets")
def test_an_explicit_config_is_tied_to_the_service_home(tmp_path: Path, home: Path) -> None:
    other = tmp_path / "agent-home"
    other.mkdir()
    write_auth(other)
    service = CronService.from_home(other, config=chronos_config())
    assert service.scheduler.name == "chronos", service.scheduler.fallback_reason
    # Without a login beside it, the same config falls back, with the reason.
    bare = CronService.from_home(home, config=chronos_config())
    assert bare.scheduler.name == "builtin"
    assert "not available" in (bare.scheduler.fallback_reason or "")
