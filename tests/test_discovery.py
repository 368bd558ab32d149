"""Discovery: bundled, user folders and real entry points; precedence, shadowing, failures."""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import pytest
from helpers.servicekit import write_dist, write_user_plugin

from hermes_cron.discovery import discover_providers, find_provider

PROVIDER = """
from hermes_cron import hookimpl

LABEL = {label!r}

@hookimpl
def is_available(config):
    return True

@hookimpl
def reconcile(ctx):
    return {{"label": LABEL}}
"""


def _by(records, name, source):
    return next(r for r in records if r.name == name and r.source == source)


def test_bundled_chronos_is_found_without_being_imported(home: Path) -> None:
    records = discover_providers(home)
    chronos = _by(records, "chronos", "bundled")
    assert chronos.error is None and chronos.shadowed_by is None
    assert Path(chronos.path, "plugin.yaml").is_file()
    assert chronos.module is None and not chronos.loaded
    module = chronos.load()
    assert module is not None and module.__name__ == "hermes_cron_builtin_plugins.chronos"


def test_user_folder_plugin_loads_with_relative_imports(home: Path) -> None:
    path = write_user_plugin(
        home,
        "mine",
        """
        from hermes_cron import hookimpl
        from .helper import VALUE

        @hookimpl
        def reconcile(ctx):
            return VALUE
        """,
    )
    (path / "helper.py").write_text("VALUE = 'from helper'\n", encoding="utf-8")
    record = find_provider("mine", home)
    assert record is not None and record.error is None, record and record.error
    assert record.source == "user" and record.path == str(path)
    assert record.description == "test plugin mine" and record.version == "1.0"
    assert record.module.reconcile(None) == "from helper"
    assert record.module.__name__.startswith("hermes_cron_user_plugins.mine_")
    # Loading again (another service in this process) reuses the module.
    assert find_provider("mine", home).module is record.module


def test_user_plugin_with_the_same_name_in_two_homes_gets_two_modules(tmp_path: Path) -> None:
    homes = [tmp_path / "a", tmp_path / "b"]
    modules = []
    for i, h in enumerate(homes):
        write_user_plugin(h, "same", PROVIDER.format(label=f"home{i}"))
        modules.append(find_provider("same", h).module)
    assert modules[0] is not modules[1]
    assert [m.LABEL for m in modules] == ["home0", "home1"]


def test_real_entry_point(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = f"hc_ep_{uuid.uuid4().hex[:8]}"
    site = write_dist(
        tmp_path, "hc-ep-dist", {"epprov": mod}, {mod: PROVIDER.format(label="entry point")}
    )
    monkeypatch.syspath_prepend(str(site))
    records = discover_providers(home)
    record = _by(records, "epprov", "entrypoint")
    assert record.error is None and record.shadowed_by is None
    assert mod not in sys.modules  # discovery alone imports nothing
    assert record.load().LABEL == "entry point"
    assert record.path == str(site / f"{mod}.py")


def test_precedence_and_shadowing_across_sources(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A user "chronos" is shadowed by the bundled one; an entry point "dup" by a user "dup";
    # an entry point "chronos" by the bundled one.
    write_user_plugin(home, "chronos", PROVIDER.format(label="user chronos"))
    write_user_plugin(home, "dup-folder", PROVIDER.format(label="user dup"), name="dup")
    mod = f"hc_ep_{uuid.uuid4().hex[:8]}"
    site = write_dist(
        tmp_path,
        "hc-shadow-dist",
        {"dup": f"{mod}", "chronos": f"{mod}"},
        {mod: PROVIDER.format(label="entry point dup")},
    )
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level(logging.WARNING, logger="hermes_cron.discovery"):
        records = discover_providers(home, load=True)
    assert _by(records, "chronos", "bundled").shadowed_by is None
    assert _by(records, "chronos", "user").shadowed_by == "bundled"
    assert _by(records, "chronos", "entrypoint").shadowed_by == "bundled"
    assert _by(records, "dup", "user").shadowed_by is None
    assert _by(records, "dup", "entrypoint").shadowed_by == "user"
    assert _by(records, "dup", "user").module.LABEL == "user dup"
    assert mod not in sys.modules  # the shadowed entry point was never imported
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("shadowed" in w for w in warnings) == 3
    assert [r.source for r in records] == sorted(
        (r.source for r in records), key=["bundled", "user", "entrypoint"].index
    )
    assert find_provider("dup", home).source == "user"


def test_two_user_folders_with_one_name(home: Path) -> None:
    write_user_plugin(home, "a-first", PROVIDER.format(label="a"), name="twin")
    write_user_plugin(home, "b-second", PROVIDER.format(label="b"), name="twin")
    records = [r for r in discover_providers(home) if r.name == "twin"]
    assert [(Path(r.path).name, r.shadowed_by) for r in records] == [
        ("a-first", None),
        ("b-second", "user"),
    ]


def test_failures_are_reported_and_the_others_still_load(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_user_plugin(home, "broken", "raise RuntimeError('kaput at import')\n")
    write_user_plugin(home, "exits", "import sys\nsys.exit(3)\n")
    write_user_plugin(home, "syntax", "def (:\n")
    write_user_plugin(home, "noinit", "", init=False)
    write_user_plugin(home, "badyaml", "", meta="name: [unclosed\n")
    write_user_plugin(home, "noname", "", meta="description: no name here\n")
    write_user_plugin(home, "reserved", "", name="builtin")
    write_user_plugin(home, "yes", "", meta="name: off\n")  # YAML reads it as a boolean
    write_user_plugin(home, "fine", PROVIDER.format(label="fine"))
    site = write_dist(tmp_path, "hc-broken-dist", {"missing": "hc_no_such_module_xyz"}, {})
    monkeypatch.syspath_prepend(str(site))

    records = discover_providers(home, load=True)
    errors = {r.name: r.error for r in records if r.source in ("user", "entrypoint")}
    assert "RuntimeError: kaput at import" in errors["broken"]
    assert "SystemExit" in errors["exits"]
    assert "SyntaxError" in errors["syntax"]
    assert "no __init__.py" in errors["noinit"]
    assert "plugin.yaml" in errors["badyaml"] and "cannot read" in errors["badyaml"]
    assert "'name' is missing" in errors["noname"]
    assert "'name' must be text, got False (quote it)" in errors["yes"]
    assert "reserved" in errors["builtin"]
    assert "hc_no_such_module_xyz" in errors["missing"]
    assert errors["fine"] is None
    assert all("\n" not in (e or "") for e in errors.values())
    assert _by(records, "fine", "user").module.LABEL == "fine"
    assert _by(records, "chronos", "bundled").module is not None


def test_a_broken_plugin_yaml_cannot_shadow_by_a_made_up_name(home: Path) -> None:
    write_user_plugin(home, "chronos", "", meta="name: builtin\n")
    records = discover_providers(home)
    assert _by(records, "chronos", "bundled").shadowed_by is None


def test_no_user_plugins_folder(home: Path) -> None:
    assert {r.source for r in discover_providers(home)} <= {"bundled", "entrypoint"}
