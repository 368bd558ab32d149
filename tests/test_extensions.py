"""Extension plugins (SPEC §6): discovered plugins that implement no provider hook are
registered whatever the provider, unless ``cron.disabled_plugins`` names them; a broken
one is reported, never fatal; ``hermes-cron plugins`` lists every plugin."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers.observekit import StatusRunner
from helpers.servicekit import ledger_rows, run_cli, write_config, write_dist, write_user_plugin

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.errors import PluginError
from hermes_cron.plugin_manager import get_plugin_manager, register_extension
from hermes_cron.service import CronService

#: A folder extension that keeps every report it hears (and says it was imported).
NOTIFY = """
    import json, os
    from pathlib import Path
    from hermes_cron import hookimpl

    SEEN = []
    Path(os.environ["HERMES_HOME"], "imported-{name}").touch()

    @hookimpl
    def run_finished(ctx, job, result):
        SEEN.append((job["id"], dict(result.row), result.output))
        with open(Path(ctx.home) / "heard-{name}.jsonl", "a") as out:
            out.write(json.dumps({{"job": job["id"], "row": dict(result.row),
                                   "output": result.output}}) + "\\n")
"""

#: A user provider: it starts nothing (returns at once) and is always available.
PROVIDER = """
    import os
    from pathlib import Path
    from hermes_cron import hookimpl

    Path(os.environ["HERMES_HOME"], "imported-{name}").touch()

    @hookimpl
    def is_available(config):
        return True

    @hookimpl
    def start(ctx, stop_event):
        return {{"started": "{name}"}}
"""


def notify(home: Path, name: str = "notify", **kwargs: Any) -> Path:
    return write_user_plugin(home, name, NOTIFY.format(name=name), **kwargs)


def heard(home: Path, name: str = "notify") -> List[Dict[str, Any]]:
    path = home / f"heard-{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def service_on(home: Path, clock: FakeClock, **kwargs: Any) -> CronService:
    return CronService.from_home(home, clock=clock, plugins=[StatusRunner()], **kwargs)


def test_a_folder_extension_hears_every_run_with_the_builtin_provider(
    home: Path, clock: FakeClock
) -> None:
    notify(home)
    service = service_on(home, clock)
    assert service.provider_name == "builtin"
    assert service.pm.get_plugin("notify") is not None
    ok = service.add_job("every 1h", prompt="ok")
    bad = service.add_job("every 1h", prompt="error")
    service.run_now(ok["id"])
    service.run_now(bad["id"])
    clock.advance(3600)
    service.tick()  # both hourly fires due now
    assert service.close()
    rows = list(reversed(service.ledger.read()))
    assert len(rows) == 4
    said = [h["row"] for h in heard(home)]
    # The two run_now calls run one after the other; the tick's two fires run at once,
    # so the hook may hear them in either order, but it hears each row as recorded.
    assert said[:2] == rows[:2]
    by_job = sorted(said[2:], key=lambda row: row["job_id"])
    assert by_job == sorted(rows[2:], key=lambda row: row["job_id"])
    assert [h["output"] for h in heard(home)][:2] == ["output of ok", "output of error"]
    record = next(r for r in service.extensions or [] if r.name == "notify")
    assert (record.kind, record.source, record.registered) == ("extension", "user", True)


def test_an_extension_is_registered_whatever_provider_is_selected(
    home: Path, clock: FakeClock
) -> None:
    notify(home)
    write_user_plugin(home, "ticker", PROVIDER.format(name="ticker"))
    write_config(home, {"cron": {"provider": "ticker"}})
    service = service_on(home, clock)
    assert service.provider_name == "ticker", service.scheduler.fallback_reason
    job = service.add_job("every 1h", prompt="ok")
    due = service.store.get(job["id"])["next_run_at"]
    clock.advance(3600)
    assert service.fire_due(job["id"], due).status == "ok"
    assert service.close()
    [report] = heard(home)
    assert report["row"]["provider"] == "ticker" and report["row"]["status"] == "ok"


def test_a_provider_is_not_registered_unless_selected(home: Path, clock: FakeClock) -> None:
    write_user_plugin(home, "ticker", PROVIDER.format(name="ticker"))
    service = service_on(home, clock)
    assert service.provider_name == "builtin"
    assert service.pm.get_plugin("ticker") is None
    record = next(r for r in service.extensions or [] if r.name == "ticker")
    assert record.kind == "provider" and not record.registered


def test_disabled_plugins_keeps_an_extension_out_and_unimported(
    home: Path, clock: FakeClock
) -> None:
    notify(home)
    notify(home, "other")
    write_config(home, {"cron": {"disabled_plugins": ["notify"]}})
    service = service_on(home, clock)
    assert service.pm.get_plugin("notify") is None
    assert service.pm.get_plugin("other") is not None
    assert not (home / "imported-notify").exists()
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    assert service.close()
    assert heard(home, "notify") == []
    assert len(heard(home, "other")) == 1
    rows = {r["name"]: r for r in service.plugins()}
    assert rows["notify"]["disabled"] is True and rows["notify"]["loaded"] is False
    assert not (home / "imported-notify").exists()  # not even to list it


def test_a_broken_extension_is_reported_and_the_others_load(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    notify(home)
    write_user_plugin(home, "broken", "raise ImportError('no such thing')\n")
    write_user_plugin(
        home,
        "typo",
        "from hermes_cron import hookimpl\n@hookimpl\ndef run_finishd(job):\n    pass\n",
    )
    service = service_on(home, clock)
    records = {r.name: r for r in service.extensions or []}
    assert "import failed" in str(records["broken"].error)
    assert "run_finishd" in str(records["typo"].error)
    assert service.pm.get_plugin("broken") is None and service.pm.get_plugin("typo") is None
    assert records["notify"].registered
    job = service.add_job("every 1h", prompt="ok")
    assert service.run_now(job["id"]).status == "ok"
    assert service.close()
    assert len(heard(home)) == 1
    rows = {r["name"]: r for r in service.plugins()}
    assert rows["broken"]["loaded"] is False and "no such thing" in rows["broken"]["error"]
    assert rows["typo"]["loaded"] is False


def test_an_entry_point_extension_is_registered(
    home: Path, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = f"hc_ext_{uuid.uuid4().hex[:8]}"
    code = "from hermes_cron import hookimpl\nSEEN = []\n@hookimpl\ndef run_finished(result):\n"
    code += "    SEEN.append(result.status)\n"
    site = write_dist(tmp_path, "hc-ext-dist", {"epext": mod}, {mod: code})
    monkeypatch.syspath_prepend(str(site))
    service = service_on(home, clock)
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    assert service.close()
    assert sys.modules[mod].SEEN == ["ok"]
    row = next(r for r in service.plugins() if r["name"] == "epext")
    assert (row["kind"], row["source"], row["loaded"]) == ("extension", "entrypoint", True)


def test_an_extension_named_as_provider_falls_back_and_stays_an_extension(
    home: Path, clock: FakeClock
) -> None:
    notify(home)
    write_config(home, {"cron": {"provider": "notify"}})
    service = service_on(home, clock)
    assert service.provider_name == "builtin"
    assert "implements no provider hook" in str(service.scheduler.fallback_reason)
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    assert service.close()
    assert len(heard(home)) == 1


def test_providers_lists_no_extension(home: Path, clock: FakeClock) -> None:
    notify(home)
    names = [row["name"] for row in service_on(home, clock).providers()]
    assert "notify" not in names and names[0] == "builtin"


def test_a_declared_provider_is_not_imported_to_load_extensions(
    home: Path, clock: FakeClock
) -> None:
    meta = "name: ticker\ndescription: a provider\nversion: '1'\nkind: provider\n"
    write_user_plugin(home, "ticker", PROVIDER.format(name="ticker"), meta=meta)
    service = service_on(home, clock)
    assert not (home / "imported-ticker").exists()
    row = next(r for r in service.plugins() if r["name"] == "ticker")
    assert (row["kind"], row["loaded"], row["error"]) == ("provider", True, None)


def test_a_false_kind_declaration_is_reported(home: Path, clock: FakeClock) -> None:
    meta = "name: notify\ndescription: x\nversion: '1'\nkind: provider\n"
    notify(home, meta=meta)
    bad = "name: odd\ndescription: x\nversion: '1'\nkind: observer\n"
    write_user_plugin(home, "odd", "", meta=bad)
    rows = {r["name"]: r for r in service_on(home, clock).plugins()}
    assert "says kind: provider, but its hooks make it an extension" in rows["notify"]["error"]
    assert "kind must be one of provider, extension" in rows["odd"]["error"]


def test_a_wrapper_on_run_finished_is_refused() -> None:
    class Wraps:
        @hookimpl(wrapper=True)
        def run_finished(self, result: Any) -> Any:
            return (yield)

    pm = get_plugin_manager()
    with pytest.raises(PluginError, match="cannot be a wrapper"):
        register_extension(pm, Wraps(), "wraps")
    assert pm.get_plugin("wraps") is None


def test_register_extension_refuses_a_provider_and_a_plugin_without_hooks() -> None:
    class Provider:
        @hookimpl
        def start(self, ctx: Any, stop_event: Any) -> Any:
            return {}

    pm = get_plugin_manager()
    with pytest.raises(PluginError, match="it is a provider"):
        register_extension(pm, Provider(), "prov")
    with pytest.raises(PluginError, match="implements no hook"):
        register_extension(pm, object(), "nothing")


# -- the command line --------------------------------------------------------------------


def test_cli_run_delivers_the_report_to_an_extension_before_it_exits(home: Path) -> None:
    notify(home)
    added = run_cli(home, "add", "every 1h", "--", sys.executable, "-c", "print('hello')")
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.strip()
    ran = run_cli(home, "run", job_id)
    assert ran.returncode == 0, ran.stderr
    [report] = heard(home)
    assert report["job"] == job_id and report["output"] == "hello\n"
    assert report["row"] == ledger_rows(home)[0]


def test_read_only_commands_do_not_import_extensions(home: Path) -> None:
    notify(home)
    for args in (("status",), ("list",), ("add", "every 1h", "--", "true"), ("next", "@daily")):
        proc = run_cli(home, *args)
        assert proc.returncode == 0, proc.stderr
    assert not (home / "imported-notify").exists()


def test_cli_plugins_lists_every_plugin(home: Path) -> None:
    notify(home)
    write_user_plugin(home, "broken", "raise ImportError('nope')\n")
    write_user_plugin(home, "ticker", PROVIDER.format(name="ticker"))
    notify(home, "muted")
    write_config(home, {"cron": {"disabled_plugins": ["muted"]}})
    proc = run_cli(home, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    for row in rows.values():
        assert {"name", "kind", "source", "path", "loaded", "error"} <= set(row)
    assert (rows["notify"]["kind"], rows["notify"]["loaded"]) == ("extension", True)
    assert (rows["ticker"]["kind"], rows["ticker"]["loaded"]) == ("provider", True)
    assert (rows["chronos"]["kind"], rows["chronos"]["source"]) == ("provider", "bundled")
    assert rows["broken"]["loaded"] is False and "nope" in rows["broken"]["error"]
    assert rows["muted"]["loaded"] is False and rows["muted"]["disabled"] is True
    text = run_cli(home, "plugins")
    assert text.returncode == 0, text.stderr
    assert "extension" in text.stdout and "disabled (cron.disabled_plugins)" in text.stdout


def test_a_selected_provider_may_observe_runs(home: Path, clock: FakeClock) -> None:
    code = textwrap.dedent(PROVIDER.format(name="watcher")) + (
        "\nSEEN = []\n\n@hookimpl\ndef run_finished(result):\n    SEEN.append(result.status)\n"
    )
    write_user_plugin(home, "watcher", code)
    write_config(home, {"cron": {"provider": "watcher"}})
    service = service_on(home, clock)
    assert service.provider_name == "watcher", service.scheduler.fallback_reason
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    assert service.close()
    assert service.scheduler.plugin.SEEN == ["ok"]


def test_tracing_logs_each_observer_call(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    notify(home)
    service = service_on(home, clock)
    job = service.add_job("every 1h", prompt="ok")
    with caplog.at_level(logging.DEBUG, logger="hermes_cron.plugins"):
        service.run_now(job["id"])
        assert service.close()
    assert any(
        r.getMessage() == f"hook run_finished(job={job['id']}, status=ok) -> [notify]"
        for r in caplog.records
    )
