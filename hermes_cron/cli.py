"""``hermes-cron``: the command line (SPEC §8). Every command goes through ``CronService``.

Errors: a ``HermesCronError`` (bad input, unknown job, corrupt ``jobs.json``...)
prints one line ``hermes-cron: <message>`` on stderr and exits 2 with nothing
changed; any other exception prints one line and exits 1 (with the traceback
under ``--debug`` or ``HERMES_CRON_DEBUG=1``). ``run`` exits 1 when the job it
ran failed.

Startup is kept short: heavy modules (the service, schedules, the webhook
server) are imported by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import traceback
from datetime import datetime
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Sequence, cast

from .errors import HermesCronError, UsageError

PROG = "hermes-cron"
DEBUG_ENV = "HERMES_CRON_DEBUG"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, given the terminal width so that it does not import
    shutil to ask: argparse builds one for every argument added, so every command would
    pay for that import (issue 12)."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        if len(args) < 3 and kwargs.get("width") is None:
            kwargs["width"] = _terminal_columns() - 2  # as argparse does
        super().__init__(prog, *args, **kwargs)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line (``UsageError``) instead of exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------
# Output helpers


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {_one_line(message)}\n")


def _fmt_time(iso: Optional[str], zone: Optional[str] = None) -> str:
    """``2026-03-02 13:00:05 CET`` in ``zone`` (default: the system zone); ``-`` for None."""
    if not iso:
        return "-"
    from .timeutil import get_zone, parse_iso

    try:
        dt = parse_iso(iso)
        dt = dt.astimezone(get_zone(zone)) if zone else dt.astimezone()
    except ValueError:
        return str(iso)
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths))
        sys.stdout.write(line.rstrip() + "\n")


def _shorten(text: Any, limit: int) -> str:
    text = _one_line(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------
# Commands


#: Commands that run jobs or write ledger rows, so the extension plugins (``run_job``,
#: ``run_finished``) must be registered. The others never call those hooks and skip
#: importing every plugin (start-up time).
RUNNING_COMMANDS = frozenset({"run", "tick", "daemon", "serve", "plugins"})
#: The longest wait (seconds) between two tries of ``daemon``/``serve`` to reach a
#: store that is down when they start.
STORE_RETRY_MAX = 10.0


def _service(args: argparse.Namespace) -> Any:
    from .service import CronService

    return CronService.from_home(args.home, extensions=args.command in RUNNING_COMMANDS)


def _quarantine_warnings(service: Any, snap: Any) -> None:
    for q in snap.quarantined:
        _warn(f"quarantined {q.error} (never run; fix it in {service.store.describe()})")


def _job_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The job options given on the command line, by record field (text, parsed by the
    service: a bad value is one line, exit 2)."""
    from .options import OPTIONS

    return {o.field: getattr(args, o.field) for o in OPTIONS if getattr(args, o.field) is not None}


def cmd_add(args: argparse.Namespace) -> int:
    command: Optional[List[str]] = args.command_argv
    if command is not None and args.prompt is not None:
        raise UsageError("add: give either --prompt TEXT or -- CMD ARGS..., not both")
    if command is None and args.prompt is None:
        raise UsageError("add: a job needs --prompt TEXT or -- CMD ARGS...")
    if command is not None and not command:
        raise UsageError("add: the command after -- is empty")
    if args.repeat is not None and args.repeat < 1:
        raise UsageError(f"add: --repeat must be >= 1, got {args.repeat}")
    service = _service(args)
    job = service.add_job(
        " ".join(args.schedule),
        command=command,
        prompt=args.prompt,
        name=args.name,
        repeat=args.repeat,
        tz=args.tz,
        **_job_options(args),
    )
    if args.json:
        _print_json(job)
    else:
        sys.stdout.write(job["id"] + "\n")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    command: Optional[List[str]] = args.command_argv
    if command is not None and args.prompt is not None:
        raise UsageError("edit: give either --prompt TEXT or -- CMD ARGS..., not both")
    if command is not None and not command:
        raise UsageError("edit: the command after -- is empty")
    if args.repeat is not None and args.repeat < 1:
        raise UsageError(f"edit: --repeat must be >= 1, got {args.repeat}")
    if args.schedule is not None and not args.schedule.strip():
        raise UsageError("edit: --schedule is empty")
    service = _service(args)
    job = service.edit_job(
        args.id,
        schedule=args.schedule,
        tz=args.tz,
        name=args.name,
        repeat=args.repeat,
        command=command,
        prompt=args.prompt,
        clear=args.clear or (),
        **_job_options(args),
    )
    if args.json:
        _print_json(job)
    else:
        extra = ""
        if job.get("next_run_at"):
            extra = f"; next run {_fmt_time(job['next_run_at'], service.default_tz)}"
        elif job["state"] == "completed":
            extra = "; completed (no fire left)"
        sys.stdout.write(f"edited {job['id']} ({_shorten(job.get('name'), 40)}){extra}\n")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    service = _service(args)
    snap = service.store.snapshot()
    jobs = service.store.list_jobs(include_completed=args.all)
    _quarantine_warnings(service, snap)
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        sys.stdout.write("no jobs\n" if not snap.quarantined else "no valid jobs\n")
        return 0
    rows = []
    for job in jobs:
        schedule = job.get("schedule") or {}
        last = job.get("last_status") or "-"
        if job.get("fire_claim"):
            last = "running"
        rows.append(
            [
                job["id"],
                _shorten(job.get("name"), 30),
                _shorten(schedule.get("text"), 24),
                job["state"] if job.get("enabled", True) else "disabled",
                _fmt_time(job.get("next_run_at"), service.default_tz),
                last,
            ]
        )
    _table(rows, ["ID", "NAME", "SCHEDULE", "STATE", "NEXT RUN", "LAST"])
    return 0


def _seconds(value: Any) -> Optional[str]:
    if value is None:
        return None
    from .store.rules import seconds_text

    return seconds_text(float(value))


def _option_lines(job: Dict[str, Any], zone: str) -> List[tuple]:
    """``show``'s lines for the job options that are set, and what they hold pending."""
    retry = job.get("pending_retry")
    queued = job.get("queued_fire")
    retries = job.get("retries")
    delay = _seconds(job.get("retry_delay") or 30)
    env = job.get("env")
    return [
        ("jitter", _seconds(job.get("jitter"))),
        ("overlap", job.get("overlap")),
        ("retries", f"{retries} (first after {delay}, doubling)" if retries else None),
        ("timeout", _seconds(job.get("timeout"))),
        ("grace", _seconds(job.get("misfire_grace"))),
        ("cwd", job.get("cwd")),
        ("env", " ".join(f"{k}={v}" for k, v in env.items()) if env else None),
        ("until", _fmt_time(job.get("until"), zone) if job.get("until") else None),
        (
            "retry",
            f"attempt {retry['attempt']} at {_fmt_time(retry['due_at'], zone)}" if retry else None,
        ),
        (
            "queued",
            f"the fire due {_fmt_time(queued['fire_at'], zone)} runs when the run ends"
            if queued
            else None,
        ),
    ]


def _schedule_line(schedule: Dict[str, Any]) -> str:
    """``every monday 9am = 0 9 * * 1 (cron, UTC)``: when the words are not the cron
    expression itself (plain English, an alias), the expression that runs is shown too."""
    text, kind, expr = schedule.get("text"), schedule.get("kind"), schedule.get("expr")
    words = str(text)
    if kind == "cron" and expr and " ".join(words.split()) != expr:
        words += f" = {expr}"
    return f"{words} ({kind}, {schedule.get('tz')})"


def _show_job(job: Dict[str, Any], zone: str) -> None:
    schedule = job.get("schedule") or {}
    repeat = job.get("repeat") or {}
    claim = job.get("fire_claim")
    recurring = schedule.get("kind") != "once"
    lines = [
        ("id", job["id"]),
        ("name", job.get("name")),
        ("schedule", _schedule_line(schedule)),
        ("command", " ".join(job["command"]) if job.get("command") else None),
        ("prompt", job.get("prompt")),
        ("state", job["state"] if job.get("enabled", True) else f"{job['state']} (disabled)"),
        (
            "repeat",
            f"{repeat.get('completed', 0)} of {repeat['times']}"
            if repeat.get("times") and recurring
            else None,
        ),
        ("runs", repeat.get("completed", 0) if not (repeat.get("times") and recurring) else None),
        ("next run", _fmt_time(job.get("next_run_at"), zone)),
        ("last run", _fmt_time(job.get("last_run_at"), zone)),
        ("last status", job.get("last_status")),
        ("last error", job.get("last_error")),
        (
            "running",
            f"fire {claim['fire_at']} claimed by {claim['owner']} at {claim['claimed_at']}"
            if claim
            else None,
        ),
        *_option_lines(job, zone),
        ("created", _fmt_time(job.get("created_at"), zone)),
        ("updated", _fmt_time(job.get("updated_at"), zone)),
    ]
    for key, value in lines:
        if value is not None:
            sys.stdout.write(f"{key + ':':13}{value}\n")


def cmd_show(args: argparse.Namespace) -> int:
    service = _service(args)
    job = service.store.get(args.id)
    if args.json:
        _print_json(job)
    else:
        _show_job(job, service.default_tz)
    return 0


def _mutation(verb: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        service = _service(args)
        job = getattr(service, f"{verb}_job")(args.id)
        if args.json:
            _print_json(job)
        else:
            past = {"pause": "paused", "resume": "resumed", "remove": "removed"}[verb]
            extra = ""
            if verb == "resume" and job.get("next_run_at"):
                extra = f"; next run {_fmt_time(job['next_run_at'], service.default_tz)}"
            sys.stdout.write(f"{past} {job['id']} ({_shorten(job.get('name'), 40)}){extra}\n")
        return 0

    return run


def cmd_run(args: argparse.Namespace) -> int:
    import attrs

    service = _service(args)
    try:
        result = service.run_now(args.id)
    finally:
        service.close()  # the observers get the run's report before we exit (bounded)
    if args.json:
        _print_json(attrs.asdict(result))
    else:
        line = f"{result.job_id}: {result.status}"
        if result.error:
            line += f": {_one_line(result.error)}"
        sys.stdout.write(line + "\n")
        if result.output_path:
            sys.stdout.write(f"output: {result.output_path}\n")
    return 0 if result.status == "ok" else 1


def cmd_logs(args: argparse.Namespace) -> int:
    row, text = _service(args).run_output(args.id, args.fire_at)
    if args.json:
        _print_json({**row, "text": text})
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"runs: --limit must be >= 1, got {args.limit}")
    rows = _service(args).ledger.read(job_id=args.id, limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        sys.stdout.write("no runs\n")
        return 0
    table = []
    for row in rows:
        output = row.get("output") or ""
        if output:
            # The path below cron/output/ is enough to find the file.
            output = "/".join(output.replace(os.sep, "/").split("/")[-2:])
        table.append(
            [
                str(row.get("job_id")),
                _fmt_time(row.get("fire_at")),
                _fmt_time(row.get("started_at")),
                str(row.get("status"))
                + (f" (attempt {row['attempt']})" if (row.get("attempt") or 1) > 1 else ""),
                str(row.get("provider")),
                _shorten(row.get("error") or output, 60),
            ]
        )
    _table(table, ["JOB", "FIRE TIME", "STARTED", "STATUS", "PROVIDER", "OUTPUT / ERROR"])
    return 0


def _parse_after(text: str, zone: str) -> datetime:
    from .timeutil import UTC, get_zone

    value = text.strip()
    if value.lower() == "now":
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise UsageError(
            f"next: --after {text!r} is not an ISO 8601 time (e.g. 2026-03-02T09:00)"
        ) from None
    if dt.tzinfo is None:
        try:
            dt = dt.replace(tzinfo=get_zone(zone))
        except ValueError as exc:
            raise UsageError(f"next: {exc}") from None
    return dt


def cmd_next(args: argparse.Namespace) -> int:
    from .config import cfg_get, load_config_or_defaults
    from .schedules import parse_schedule, preview
    from .timeutil import UTC, get_zone, local_zone_name

    if not 1 <= args.count <= 1000:
        raise UsageError(f"next: --count must be between 1 and 1000, got {args.count}")
    zone = args.tz
    if not zone:
        config, _ = load_config_or_defaults(args.home)
        configured = cfg_get(config, "cron", "timezone", default="")
        zone = configured.strip() if isinstance(configured, str) and configured.strip() else ""
        if zone:
            try:
                get_zone(zone)
            except ValueError:
                # A bad value in config.yaml is a warning, as for every other command.
                _warn(f"cron.timezone: unknown time zone {zone!r} (the system zone is used)")
                zone = ""
        zone = zone or local_zone_name()
    after = _parse_after(args.after, zone) if args.after else datetime.now(UTC)
    schedule = parse_schedule(" ".join(args.schedule), tz=zone, now=after)
    times = preview(schedule, after=after, count=args.count)
    try:
        shown = get_zone(schedule.tz)
    except ValueError:
        shown = UTC
    local = [t.astimezone(shown) for t in times]
    if args.json:
        _print_json([t.isoformat() for t in local])
        return 0
    if not local:
        sys.stdout.write("never fires after " + after.isoformat() + "\n")
        return 0
    sys.stdout.write(f"schedule: {_schedule_line(schedule.to_record())}\n")
    for t in local:
        sys.stdout.write(f"  {t.strftime('%a %Y-%m-%d %H:%M:%S %Z')}  {t.isoformat()}\n")
    return 0


def _print_summary(value: Any, as_json: bool) -> None:
    if as_json:
        _print_json(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (list, dict)):
                item = json.dumps(item, ensure_ascii=False, default=str)
            sys.stdout.write(f"{key}: {item}\n")
    elif value is not None:
        sys.stdout.write(f"{value}\n")


def cmd_daemon(args: argparse.Namespace) -> int:
    from .stop_signals import StopSignals  # only the commands that run a provider need it

    stop = threading.Event()
    # Before the service is built: a SIGTERM while the plugins load or the store opens
    # is a clean stop (exit 0), never a death by signal.
    signals = StopSignals(stop).install()
    try:
        service = _service(args)
    except BaseException:
        signals.uninstall()
        raise
    log = logging.getLogger("hermes_cron")
    try:
        if not _first_read(service, stop, signals.requested):
            return 0  # told to stop while waiting for the store
        if service.scheduler.fallback_reason:
            log.warning("using the built-in provider: %s", service.scheduler.fallback_reason)
        log.info("daemon: provider %s, home %s", service.provider_name, service.home)
        try:
            service.start_metrics_server()
        except HermesCronError as exc:
            # Metrics are for watching the scheduler: never a reason not to schedule.
            log.error("%s; running without metrics", exc)
        result = service.start(stop)
    finally:
        signals.uninstall()
        service.close()
    if service.provider_name != "builtin":
        # An external provider armed its triggers and returned: say what it did.
        _print_summary(result, args.json)
    elif args.json:
        _print_json(result)
    return 0


def _first_read(
    service: Any, stop: threading.Event, requested: Callable[[], bool] = lambda: False
) -> bool:
    """The store's first read, before ``daemon`` or ``serve`` starts its provider: a
    corrupt ``jobs.json`` stops us here (exit 2 naming the file). A database that cannot
    be reached yet is waited for with backoff, as a running daemon rides out an outage
    (the replicas of a deployment may start before their database). False when told
    to stop first: ``stop`` is set, or ``requested()`` (a signal the main thread has
    taken, a moment before the thread that reads signals sets ``stop``)."""
    from .errors import StoreUnavailableError

    log = logging.getLogger("hermes_cron")
    pause, waited = 1.0, False
    while True:
        try:
            service.store.snapshot()
        except StoreUnavailableError as exc:
            if not waited:
                log.warning("%s; waiting for it (retrying with backoff)", exc)
                waited = True
            if stop.wait(pause) or requested():
                return False
            pause = min(pause * 2, STORE_RETRY_MAX)
        else:
            if waited:
                log.info("the store answers: starting")
            # A stop while the plugins loaded counts too.
            return not (stop.is_set() or requested())


def cmd_tick(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        summary = service.tick()
    finally:
        service.close()
    if args.json:
        _print_json(summary)
        return 0
    results = summary.get("results", [])
    for r in results:
        line = f"{r['job_id']}: {r['status'] or r['claim']}"
        if r.get("error"):
            line += f": {_one_line(r['error'])}"
        sys.stdout.write(line + "\n")
    if not results:
        sys.stdout.write("nothing due\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from . import webhook  # starlette and uvicorn are imported only for this command
    from .stop_signals import StopSignals

    stop = threading.Event()
    signals = StopSignals(stop).install()  # before the service is built, as for daemon
    try:
        service = _service(args)
        reached = _first_read(service, stop, signals.requested)
    finally:
        signals.uninstall()  # uvicorn installs its own
    if not reached:
        service.close()
        return 0
    result = webhook.serve(service, host=args.host, port=args.port)
    return int(result or 0)


def cmd_providers(args: argparse.Namespace) -> int:
    service = _service(args)
    rows = service.providers()
    if args.json:
        _print_json(rows)
        return 0
    table = []
    for row in rows:
        available = {True: "yes", False: "no", None: "-"}[row["available"]]
        note = row["error"] or (f"shadowed by {row['shadowed_by']}" if row["shadowed_by"] else "")
        table.append(
            [
                ("* " if row["active"] else "  ") + row["name"],
                row["source"],
                available,
                _shorten(note, 70),
                str(row["path"] or "-"),
            ]
        )
    _table(table, ["  NAME", "SOURCE", "AVAILABLE", "NOTE", "PATH"])
    if service.scheduler.fallback_reason:
        sys.stdout.write(f"\nfallback: {service.scheduler.fallback_reason}\n")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    service = _service(args)
    rows = service.plugins()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        sys.stdout.write("no plugins found\n")
        return 0
    table = []
    for row in rows:
        if row["disabled"]:
            note = "disabled (cron.disabled_plugins)"
        elif row["shadowed_by"]:
            note = f"shadowed by {row['shadowed_by']}"
        else:
            note = row["error"] or ("active" if row["active"] else "")
        table.append(
            [
                row["name"],
                row["kind"] or "-",
                row["source"],
                "yes" if row["loaded"] else "no",
                _shorten(note, 60),
                str(row["path"] or "-"),
            ]
        )
    _table(table, ["NAME", "KIND", "SOURCE", "LOADED", "NOTE", "PATH"])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    service = _service(args)
    status = service.status()
    if args.json:
        _print_json(status)
        return 0
    zone = service.default_tz
    out = sys.stdout.write
    provider = status["provider"]
    if status["requested"] and status["requested"].strip() not in ("", provider):
        provider += f" (requested: {status['requested']})"
    out(f"provider:    {provider}\n")
    if status["fallback_reason"]:
        out(f"fallback:    {status['fallback_reason']}\n")
    if status["config_error"]:
        out(f"config:      {status['config_error']}\n")
    proc = status.get("running_process") or {}
    beat = _fmt_time(status["heartbeat_at"], zone)
    if status["heartbeat_at"] and proc.get("stopped_at"):
        beat += f" (stopped {_fmt_time(proc['stopped_at'], zone)})"
    elif status["heartbeat_at"] and proc.get("alive"):
        beat += f" (pid {proc.get('pid')} on {proc.get('host')})"
    elif status["heartbeat_at"]:
        age = proc.get("heartbeat_age_s")
        ago = f"{age:.0f} s ago" if isinstance(age, (int, float)) else "long ago"
        beat += f" (stale: last seen {ago}, pid {proc.get('pid')} on {proc.get('host')})"
    out(f"heartbeat:   {beat}\n")
    error = status["last_error"]
    if error and status.get("last_error_at"):
        error = f"{_fmt_time(status['last_error_at'], zone)}: {error}"
    out(f"last error:  {error or '-'}\n")
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(status["jobs_by_state"].items()))
    out(f"jobs:        {status['jobs']}" + (f" ({by_state})" if by_state else "") + "\n")
    for q in status["quarantined"]:
        out(f"quarantined: {q['error']}\n")
    if status["next_due"]:
        out("next due:\n")
        for item in status["next_due"]:
            out(f"  {item['id']}  {_fmt_time(item['next_run_at'], zone)}\n")
    return 0


def cmd_store_export(args: argparse.Namespace) -> int:
    service = _service(args)
    document = service.export_jobs()
    # The jobs.json layout: one record per line, so a diff of two exports reads well.
    records = [json.dumps(r, ensure_ascii=False) for r in document["jobs"]]
    body = ",\n    ".join(records)
    text = '{\n  "version": 1,\n  "jobs": [' + (f"\n    {body}\n  " if records else "") + "]\n}\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    from .lock import atomic_write

    try:
        atomic_write(args.output, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(
            f"store export: cannot write {args.output}: {exc.strerror or exc}"
        ) from None
    count = len(records)
    sys.stderr.write(f"{PROG}: exported {count} job{'s' if count != 1 else ''} to {args.output}\n")
    return 0


def cmd_store_import(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(f"store import: cannot read {args.file}: {reason}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{args.file}: not valid JSON: {exc}; nothing was imported") from None
    service = _service(args)
    result = service.import_jobs(document, replace=args.replace, source=args.file)
    if args.json:
        _print_json(result)
        return 0
    done, kept = result["imported"], result["kept"]
    sys.stdout.write(f"imported {len(done)} job{'s' if len(done) != 1 else ''}\n")
    if kept:
        sys.stdout.write(
            f"left alone {len(kept)} already in the store (use --replace): {' '.join(kept)}\n"
        )
    return 0


def cmd_store_init(args: argparse.Namespace) -> int:
    message = _service(args).init_store()
    if args.json:
        _print_json({"store": message.split(": ", 1)[0], "result": message.split(": ", 1)[-1]})
    else:
        sys.stdout.write(message + "\n")
    return 0


# ---------------------------------------------------------------------------
# The parser


def _add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """The job options of SPEC §4.1 (``hermes_cron.options.OPTIONS``), for add and edit."""
    from .options import OPTIONS

    group = parser.add_argument_group("job options")
    for option in OPTIONS:
        group.add_argument(
            option.flag,
            dest=option.field,
            metavar=option.metavar,
            help=option.help,
            action="append" if option.field == "env" else "store",
        )


class _Unused:
    """Stands in for the parser of a subcommand that this run does not parse (see
    ``build_parser``): whatever a parser is asked to do (add arguments, groups, nested
    subcommands...), it takes and drops, handing back another stand-in."""

    usage: Optional[str] = None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: _Unused()


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests).

    :param only: build only this subcommand's parser (``main`` knows which command it
        runs; building all of them costs a command about 5 ms, issue 12). A parser
        built so knows no other command: parse with the full one when this fails.
    """
    parser = _Parser(
        prog=PROG,
        description="Scheduled jobs for AI agents, and a better user crontab.",
    )
    parser.add_argument("--json", action="store_true", help="print data as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument(
        "--home", metavar="PATH", help="HERMES_HOME to use (default: $HERMES_HOME or ~/.hermes)"
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print data as JSON"
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    common.add_argument("--home", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return cast(argparse.ArgumentParser, _Unused())
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = command("add", cmd_add, "create a job; prints its id")
    p.usage = (
        f"{PROG} add SCHEDULE (--prompt TEXT | -- CMD ARGS...) [--name N] [--repeat N] "
        "[--tz ZONE] [OPTIONS]"
    )
    p.add_argument(
        "schedule", nargs="+", metavar="SCHEDULE", help="e.g. 'every 5m', '0 9 * * 1-5', '+2h'"
    )
    p.add_argument("--prompt", metavar="TEXT", help="a prompt for the agent's runner")
    p.add_argument("--name", metavar="N", help="a display name")
    p.add_argument("--repeat", metavar="N", type=int, help="stop after N runs")
    p.add_argument("--tz", metavar="ZONE", help="IANA time zone of the schedule")
    _add_option_arguments(p)

    p = command("edit", cmd_edit, "change a job in place: only what is given")
    p.usage = (
        f"{PROG} edit ID [--schedule TEXT] [--name N] [--repeat N] [--tz ZONE] "
        "[--prompt TEXT | -- CMD ARGS...] [OPTIONS] [--clear OPTION]..."
    )
    p.add_argument("id", metavar="ID")
    p.add_argument("--schedule", metavar="TEXT", help="a new schedule (in --tz or the job's zone)")
    p.add_argument("--prompt", metavar="TEXT", help="run this prompt instead")
    p.add_argument("--name", metavar="N", help="a new display name")
    p.add_argument("--repeat", metavar="N", type=int, help="stop after N runs in all")
    p.add_argument("--tz", metavar="ZONE", help="move the schedule to this IANA zone")
    _add_option_arguments(p)
    p.add_argument(
        "--clear",
        metavar="OPTION",
        action="append",
        help="reset an option to its default (e.g. --clear jitter; repeatable)",
    )

    p = command("list", cmd_list, "list jobs (completed ones only with --all)")
    p.add_argument("--all", action="store_true", help="include completed jobs")
    for name, func, text in (
        ("show", cmd_show, "show one job"),
        ("pause", _mutation("pause"), "pause a job"),
        ("resume", _mutation("resume"), "resume a paused job"),
        ("remove", _mutation("remove"), "delete a job"),
        ("run", cmd_run, "run a job now, through the same claim and run body"),
    ):
        command(name, func, text).add_argument("id", metavar="ID")

    p = command("runs", cmd_runs, "the run ledger, newest first")
    p.add_argument("id", metavar="ID", nargs="?", help="only this job's runs")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N rows (default 20)")

    p = command("logs", cmd_logs, "print the output of a job's latest run (or of one run)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--fire-at", metavar="TIME", help="the run for this fire time (ISO 8601)")

    p = command("next", cmd_next, "preview fire times of a schedule")
    p.add_argument("schedule", nargs="+", metavar="SCHEDULE")
    p.add_argument("--count", type=int, default=5, metavar="N", help="how many (default 5)")
    p.add_argument("--after", metavar="TIME", help="start after this ISO 8601 time (default now)")
    p.add_argument("--tz", metavar="ZONE", help="IANA time zone")

    command("daemon", cmd_daemon, "run the active provider in the foreground until SIGINT/SIGTERM")
    command("tick", cmd_tick, "run what is due once and exit (for a system crontab)")
    p = command("serve", cmd_serve, "serve the fire webhook (starts the active provider first)")
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    command("providers", cmd_providers, "every discovered provider and which one is active")
    command(
        "plugins", cmd_plugins, "every discovered plugin (provider or extension), and if it loaded"
    )
    command("status", cmd_status, "active provider, heartbeat, last error, next due jobs")

    p = command("store", _store_usage, "export, import or initialise the job store")
    store = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", parser_class=_Parser)

    def store_command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        q = store.add_parser(name, parents=[common], help=help_text, description=help_text)
        q.set_defaults(func=func)
        return q

    q = store_command("export", cmd_store_export, "write every job in the jobs.json format")
    q.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    q = store_command("import", cmd_store_import, "add the jobs of a jobs.json-format file")
    q.add_argument("file", metavar="FILE", help="a file written by store export (or a jobs.json)")
    q.add_argument("--replace", action="store_true", help="replace jobs whose id is already there")
    store_command("init", cmd_store_init, "create or upgrade the store's schema (PostgreSQL)")
    return parser


def _store_usage(args: argparse.Namespace) -> int:
    raise UsageError(
        f"store: a subcommand is required: export, import or init (see {PROG} store --help)"
    )


def _split_command(argv: Sequence[str]) -> tuple[List[str], Optional[List[str]]]:
    """``add ... -- CMD ARGS`` (or ``edit``) → (the part argparse reads, the command argv)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    head = argv[:cut]
    if "add" not in head and "edit" not in head:
        return argv, None
    return head, argv[cut + 1 :]


def _parse(argv: List[str]) -> argparse.Namespace:
    """``build_parser().parse_args(argv)``, building only the command's own parser when
    ``argv`` names it plainly: only ``--json``, ``--debug`` and ``--home PATH`` before
    it. Anything else, and any error the small parser meets, goes through the full
    parser, so every message is the same (the command's own ``--help`` is printed by
    its parser, built in full either way)."""
    word = _command_word(argv)
    if word is not None:
        try:
            return build_parser(only=word).parse_args(argv)
        except UsageError:
            pass
    return build_parser().parse_args(argv)


def _command_word(argv: Sequence[str]) -> Optional[str]:
    """The first word of ``argv`` when only top-level ``--json``, ``--debug`` and
    ``--home PATH`` precede it, else None."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--json", "--debug") or token.startswith("--home="):
            i += 1
        elif token == "--home":
            i += 2
        elif token.startswith("-"):
            return None
        else:
            return token
    return None


def _setup_logging(command: Optional[str], debug: bool) -> Any:
    """Log to stderr for this command; returns what undoes it (``main`` restores the
    ``hermes_cron`` logger on exit, so calling ``main`` in-process leaves no trace)."""
    logger = logging.getLogger("hermes_cron")
    saved = (logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    if command in ("daemon", "serve", "tick"):
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = logging.INFO
    else:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
        level = logging.WARNING
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else level)
    logger.propagate = False

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return undo


def main(argv: Optional[Iterable[str]] = None) -> int:
    """Run ``hermes-cron`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    options = args_list[: args_list.index("--")] if "--" in args_list else args_list
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    debug = debug or "--debug" in options
    try:
        head, command_argv = _split_command(args_list)
        args = _parse(head)
        debug = debug or args.debug
        if args.command is None:
            raise UsageError(f"a command is required (see {PROG} --help)")
        args.command_argv = command_argv
        undo = _setup_logging(args.command, debug)
        try:
            return int(args.func(args))
        finally:
            undo()
    except HermesCronError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{PROG}: {_one_line(exc)}\n")
        return exc.exit_code
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): not an error worth a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - avoid a second error at exit
        except OSError:
            pass
        return 0
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {_one_line(exc)}{hint}\n")
        return 1


__all__ = ["build_parser", "main"]
