"""``CronService``: the one object the CLI, the tests and an embedding agent use.

::

    from hermes_cron import CronService, hookimpl
    from hermes_cron.runner import RunOutcome

    class MyAgent:
        @hookimpl
        def run_job(self, ctx, job):
            if job["prompt"] is None:
                return None  # command jobs: the default executor
            return RunOutcome(status="ok", output=answer(job["prompt"]))

    service = CronService.from_home(plugins=[MyAgent()])
    service.add_job("every 30m", prompt="check the inbox")
    handle = service.start_in_thread()   # the active provider, in a thread
    ...
    service.fire_due(job_id, fire_at)    # from the agent's fire webhook
    handle.stop()

Every mutation (``add_job``, ``edit_job``, ``pause_job``, ``resume_job``,
``remove_job``) writes the store first, then tells the active provider (``on_jobs_changed``);
a provider that fails to react is logged and recorded, never turned into a
failure of a mutation that already happened.

A malformed ``config.yaml`` (or a bad value in it) does not stop the service:
it runs on the defaults for what is broken, with the built-in provider when
``cron.provider`` cannot be read, and ``config_error`` / ``status()`` say why.
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .clock import Clock, SystemClock
from .config import BUILTIN_NAME, DEFAULTS, HOME_KEY, Config, cfg_get, load_config_or_defaults
from .errors import UsageError
from .paths import HomePaths, PathLike
from .resolver import AVAILABILITY_TIMEOUT, ActiveScheduler, resolve_cron_scheduler
from .status_file import read_status, record_error
from .store import Store, open_store
from .timeutil import get_zone, local_zone_name

# The plugin manager (pluggy, the built-in provider, the executor) and the hook context
# (the runner) are built on first use: ``status``, ``list`` and ``add`` with the built-in
# selected need neither, and importing them would cost each command about a bare
# interpreter start (issue 12).
if TYPE_CHECKING:
    import pluggy

    from .context import CronContext
    from .runner import RunResult

log = logging.getLogger("hermes_cron")

#: Longest wait for queued run reports when the service stops (``observers.FLUSH_TIMEOUT``).
OBSERVER_FLUSH_TIMEOUT = 5.0
#: How many upcoming jobs ``status()`` lists.
NEXT_DUE_COUNT = 5


def _new_plugin_manager() -> pluggy.PluginManager:
    from .plugin_manager import get_plugin_manager

    return get_plugin_manager()


def _check_config(config: Config) -> Tuple[Config, List[str]]:
    """Replace bad values of the keys the service uses with their defaults; say which."""
    cfg = copy.deepcopy(config)
    cron = cfg.get("cron")
    if not isinstance(cron, dict):
        cfg["cron"] = cron = copy.deepcopy(DEFAULTS["cron"])
    problems: List[str] = []
    defaults = DEFAULTS["cron"]

    def number(key: str, *, integer: bool, minimum: float, strict: bool) -> None:
        value = cron.get(key)
        ok = False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = not (integer and not isinstance(value, int))
            ok = ok and (value > minimum if strict else value >= minimum)
        if not ok:
            what = "a whole number" if integer else "a number of seconds"
            bound = f"{'>' if strict else '>='} {minimum:g}"
            problems.append(f"cron.{key} must be {what} {bound}, not {value!r}")
            cron[key] = defaults[key]

    number("max_workers", integer=True, minimum=1, strict=False)
    number("job_timeout", integer=False, minimum=0, strict=True)
    number("misfire_grace", integer=False, minimum=0, strict=False)
    number("claim_ttl", integer=False, minimum=0, strict=True)
    number("output_retention", integer=True, minimum=1, strict=False)
    number("output_max_bytes", integer=True, minimum=1024, strict=False)
    number("ledger_max_bytes", integer=True, minimum=4096, strict=False)
    port = cron.get("metrics_port")
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535):
        problems.append(f"cron.metrics_port must be a port number (0 for none), not {port!r}")
        cron["metrics_port"] = defaults["metrics_port"]
    if not isinstance(cron.get("metrics_job_labels"), bool):
        problems.append(
            f"cron.metrics_job_labels must be true or false, not {cron.get('metrics_job_labels')!r}"
        )
        cron["metrics_job_labels"] = defaults["metrics_job_labels"]
    disabled = cron.get("disabled_plugins")
    if disabled is None:
        cron["disabled_plugins"] = []
    elif not (isinstance(disabled, list) and all(isinstance(n, str) for n in disabled)):
        problems.append(f"cron.disabled_plugins must be a list of plugin names, not {disabled!r}")
        cron["disabled_plugins"] = []
    tz = cron.get("timezone")
    if tz is None:
        cron["timezone"] = ""
    elif not isinstance(tz, str):
        problems.append(f"cron.timezone must be an IANA zone name, not {tz!r}")
        cron["timezone"] = ""
    elif tz.strip():
        try:
            get_zone(tz.strip())
        except ValueError:
            problems.append(f"cron.timezone: unknown time zone {tz!r}")
            cron["timezone"] = ""
    return cfg, problems


class ServiceThread:
    """The active provider running in a thread (``CronService.start_in_thread``)."""

    def __init__(self, service: CronService, stop_event: threading.Event) -> None:
        self.service = service
        self.stop_event = stop_event
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="hermes-cron-provider", daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.service.start(self.stop_event)
        except BaseException as exc:  # kept for the caller of stop()
            self.error = exc
            log.exception("the cron provider failed")

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: Optional[float] = 30.0) -> Any:
        """Ask the provider to stop and wait up to ``timeout`` seconds; returns what its
        ``start`` returned (None while it is still running). Run reports still queued
        for the ``run_finished`` observers get a bounded wait too."""
        self.stop_event.set()
        self.thread.join(timeout)
        if self.service.ctx.observers_started:
            limit = OBSERVER_FLUSH_TIMEOUT
            self.service.ctx.observers.flush(min(timeout or limit, limit))
        return self.result

    def __enter__(self) -> ServiceThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class CronService:
    """The configured scheduler for one HERMES_HOME.

    :ivar config: the configuration in use (bad values replaced by defaults).
    :ivar config_error: None, or why ``config.yaml`` could not be used as is (one line).
    :ivar paths: every path under the home.
    :ivar store: the job store.
    :ivar ledger: the run ledger.
    :ivar clock: the clock.
    :ivar pm: the plugin manager (built on first use when ``pm`` is a function).
    :ivar scheduler: the active provider (``ActiveScheduler``).
    :ivar ctx: the context passed to hooks (``provider_name`` is the active provider),
        built on first use.
    :ivar extensions: the discovered plugin records when extensions were loaded
        (``hermes_cron.extensions``), else None.
    """

    def __init__(
        self,
        *,
        paths: HomePaths,
        config: Config,
        config_error: Optional[str],
        clock: Clock,
        pm: Union[pluggy.PluginManager, Callable[[], pluggy.PluginManager]],
        logger: logging.Logger,
        availability_timeout: float = AVAILABILITY_TIMEOUT,
        extensions: Optional[List[Any]] = None,
    ) -> None:
        self.paths = paths
        self.extensions = extensions
        self._metrics: Any = None
        self._metrics_server: Any = None
        self.config = config
        self.config_error = config_error
        self.clock = clock
        self._pm: Optional[pluggy.PluginManager] = None if callable(pm) else pm
        self._pm_factory = pm if callable(pm) else None
        self._ctx: Optional[CronContext] = None
        self._lazy_lock = threading.Lock()
        self.logger = logger
        zone = str(cfg_get(config, "cron", "timezone", default="") or "").strip()
        self.default_tz = zone or local_zone_name()
        self.store: Store = open_store(paths, config, clock=clock, default_tz=self.default_tz)
        self.ledger = self.store.runs
        self.scheduler: ActiveScheduler = resolve_cron_scheduler(
            config,
            home=paths.home,
            pm=lambda: self.pm,
            timeout=availability_timeout,
            error_sink=self._record_error,
        )

    @property
    def pm(self) -> pluggy.PluginManager:
        with self._lazy_lock:
            if self._pm is None:
                assert self._pm_factory is not None
                self._pm = self._pm_factory()
            return self._pm

    @property
    def ctx(self) -> CronContext:
        pm = self.pm
        with self._lazy_lock:
            if self._ctx is None:
                from .context import CronContext

                self._ctx = CronContext(
                    config=self.config,
                    store=self.store,
                    ledger=self.ledger,
                    clock=self.clock,
                    logger=self.logger,
                    paths=self.paths,
                    hook=pm.hook,
                    provider_name=self.scheduler.name,
                )
            return self._ctx

    @ctx.setter
    def ctx(self, ctx: CronContext) -> None:
        self._ctx = ctx

    @classmethod
    def from_home(
        cls,
        home: Optional[PathLike] = None,
        *,
        clock: Optional[Clock] = None,
        config: Optional[Config] = None,
        plugins: Iterable[Any] = (),
        logger: Optional[logging.Logger] = None,
        availability_timeout: float = AVAILABILITY_TIMEOUT,
        extensions: bool = True,
    ) -> CronService:
        """Build the service for ``home`` (None: ``$HERMES_HOME`` or ``~/.hermes``).

        :param clock: the clock (default: the system clock; tests pass ``FakeClock``).
        :param config: use this configuration instead of reading ``config.yaml``.
        :param plugins: extra plugins (e.g. an agent's ``run_job``), registered before
            the built-in defaults.
        :param logger: the logger hooks get as ``ctx.logger`` (default ``hermes_cron``).
        :param extensions: register the discovered extension plugins (section 6), except
            those named in ``cron.disabled_plugins``. This imports them; commands that
            never run a job or record a row (``status``, ``list``...) pass False.
            ``plugins`` win over extensions: an agent's ``run_job`` answers first.
        :raises PluginError: when one of ``plugins`` does not match the hook spec.
        """
        paths = HomePaths.at(home)
        problems: List[str] = []
        if config is None:
            config, error = load_config_or_defaults(paths.home)
            if error:
                problems.append(error)
        config, bad_values = _check_config(config)
        # Hooks that get only the config (is_available) find the home through it.
        config[HOME_KEY] = str(paths.home)
        if bad_values:
            problems.append(f"{paths.config}: " + "; ".join(bad_values) + " (defaults used)")
        for problem in problems:
            log.warning("%s", problem)
        plugins = list(plugins)
        records = None
        pm: Union[pluggy.PluginManager, Callable[[], pluggy.PluginManager]]
        if extensions or plugins:
            # Built now: extensions are loaded and plugins checked (PluginError) here.
            from .plugin_manager import register_plugin

            pm = _new_plugin_manager()
            if extensions:
                from .extensions import load_extensions

                records = load_extensions(pm, paths.home, config)
            # Registered after the extensions, so pluggy asks the embedder's plugins first.
            for item in plugins:
                plugin, name = item if isinstance(item, tuple) else (item, None)
                register_plugin(pm, plugin, name)
        else:
            pm = _new_plugin_manager  # nothing to register: built on first use
        return cls(
            paths=paths,
            config=config,
            config_error="; ".join(problems) or None,
            clock=clock or SystemClock(),
            pm=pm,
            logger=logger or log,
            availability_timeout=availability_timeout,
            extensions=records,
        )

    # -- plugins ------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.paths.home

    @property
    def provider_name(self) -> str:
        """The active provider's name."""
        return self.scheduler.name

    def register_plugin(self, plugin: Any, name: Optional[str] = None) -> str:
        """Register a plugin (e.g. an agent's ``run_job``); returns its registered name.

        :raises PluginError: when it does not match the hook specification.
        """
        from .plugin_manager import register_plugin

        return register_plugin(self.pm, plugin, name)

    # -- mutations ------------------------------------------------------------------

    def add_job(
        self,
        schedule_text: str,
        *,
        command: Optional[Sequence[str]] = None,
        prompt: Optional[str] = None,
        name: Optional[str] = None,
        repeat: Optional[int] = None,
        tz: Optional[str] = None,
        **options: Any,
    ) -> Dict[str, Any]:
        """Parse ``schedule_text`` (in ``tz``, default ``cron.timezone`` or the system zone)
        and create a job running ``command`` (argv list) or ``prompt``; returns the record.

        ``options`` are the job options of SPEC §4.1 by record field: ``misfire_grace``,
        ``timeout``, ``jitter``, ``retry_delay`` (seconds, or text such as ``"2m"``),
        ``overlap`` (``skip``/``queue``/``replace``), ``retries``, ``cwd``, ``env`` (a
        mapping) and ``until`` (ISO 8601; naive means the job's zone).

        :raises ScheduleError: the schedule or zone is invalid (nothing is written).
        :raises UsageError: bad arguments or option values (nothing is written).
        """
        from .options import normalize
        from .schedules import parse_schedule

        if not isinstance(schedule_text, str) or not schedule_text.strip():
            raise UsageError("a schedule is required (e.g. 'every 5m', '0 9 * * 1-5', '+2h')")
        schedule = parse_schedule(
            schedule_text.strip(), tz=tz or self.default_tz, now=self.clock.now()
        )
        values = normalize(options, schedule.tz)
        job = self.store.add(
            schedule, command=command, prompt=prompt, name=name, repeat=repeat, **values
        )
        self.notify([job["id"]])
        return job

    def edit_job(
        self,
        job_id: str,
        *,
        schedule: Optional[str] = None,
        tz: Optional[str] = None,
        name: Optional[str] = None,
        repeat: Optional[int] = None,
        command: Optional[Sequence[str]] = None,
        prompt: Optional[str] = None,
        clear: Sequence[str] = (),
        **options: Any,
    ) -> Dict[str, Any]:
        """Change only what is given (``hermes-cron edit``); returns the record.

        ``schedule`` is text parsed in ``tz`` or the job's own zone; ``tz`` alone
        re-zones the schedule. ``command`` or ``prompt`` replaces what the job runs.
        ``options`` as for ``add_job`` (``env`` is merged into the job's variables);
        ``clear`` names options (``jitter``, ``retry-delay``..., or ``repeat``) to reset
        to their defaults, before ``options`` apply. A new schedule, zone, jitter or
        until recomputes ``next_run_at``; a run in progress keeps its claim and records
        its end against the edited job. One write, re-read under the store's lock.

        :raises UsageError: nothing to change, a bad value, or the job does not exist
            (``JobNotFoundError``); nothing is written.
        """
        from .options import clear_field, normalize

        if command is not None and prompt is not None:
            raise UsageError("edit: give either a prompt or a command, not both")
        fields: Dict[str, Any] = {}
        if schedule is not None:
            fields["schedule"] = schedule
        if tz is not None:
            fields["tz"] = tz
        if name is not None:
            fields["name"] = name
        if command is not None:
            fields.update(command=list(command), prompt=None)
        if prompt is not None:
            fields.update(prompt=prompt, command=None)
        cleared = [clear_field(item) for item in clear]
        for key in cleared:
            if key in options and key != "env":
                raise UsageError(f"edit: {key} is both set and cleared")
            fields[key] = None
        if repeat is not None:
            if "repeat" in cleared:
                raise UsageError("edit: repeat is both set and cleared")
            fields["repeat"] = repeat
        if options:
            zone = tz or self.default_tz
            if tz is None and options.get("until") is not None:
                from .errors import JobNotFoundError

                try:
                    zone = self.store.get_schedule(job_id).tz  # a naive until: the job's zone
                except JobNotFoundError:
                    pass  # the update says why (no such job, or quarantined)
            values = normalize(options, zone)
            if values.get("env"):
                # --env adds to the job's variables (merged under the store's lock);
                # --clear env first replaces them.
                fields["env_add"] = values.pop("env")
            fields.update(values)
        if not fields:
            raise UsageError(
                "edit: nothing to change (give --schedule, --name, --repeat, --tz, "
                "--prompt, -- CMD, a job option or --clear)"
            )
        job = self.store.update(job_id, **fields)
        self.notify([job_id])
        return job

    def pause_job(self, job_id: str) -> Dict[str, Any]:
        """Pause a job (its next run is kept for display); returns the record."""
        job = self.store.pause(job_id)
        self.notify([job_id])
        return job

    def resume_job(self, job_id: str) -> Dict[str, Any]:
        """Resume a paused job from now; returns the record."""
        job = self.store.resume(job_id)
        self.notify([job_id])
        return job

    def remove_job(self, job_id: str) -> Dict[str, Any]:
        """Delete a job; returns the record as it was."""
        job = self.store.remove(job_id)
        self.notify([job_id])
        return job

    def run_output(self, job_id: str, fire_at: Optional[str] = None) -> Tuple[Dict[str, Any], str]:
        """The ledger row and output text of a job's latest run that left an output, or
        of its run for ``fire_at`` (ISO 8601); ``UsageError`` when there is none."""
        from .errors import JobNotFoundError, StoreError
        from .timeutil import parse_iso

        wanted = None
        if fire_at is not None:
            try:
                wanted = parse_iso(fire_at)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"--fire-at: {exc}") from None
        rows = self.ledger.read(job_id=job_id)
        if not rows:
            try:
                self.store.get(job_id)
            except JobNotFoundError:
                raise UsageError(f"no such job: {job_id!r}") from None
            raise UsageError(f"job {job_id!r} has not run yet")
        for row in rows:
            if not row.get("output"):
                continue
            if wanted is not None:
                try:
                    if parse_iso(row["fire_at"]) != wanted:
                        continue
                except (KeyError, TypeError, ValueError):
                    continue
            try:
                return row, self.store.outputs.read(row["output"])
            except StoreError:
                raise UsageError(
                    f"the output of job {job_id!r}'s run at {row.get('fire_at')} is gone "
                    f"(cron.output_retention keeps the newest "
                    f"{cfg_get(self.config, 'cron', 'output_retention', default=50)})"
                ) from None
        if wanted is not None:
            raise UsageError(f"job {job_id!r} has no run for {fire_at}")
        raise UsageError(f"job {job_id!r} has no run with an output yet")

    def notify(self, job_ids: Sequence[str]) -> Any:
        """Tell the active provider that ``job_ids`` changed (failures are recorded)."""
        if self._pm is None and self.scheduler.plugin is None:
            # The built-in, and no plugin manager built yet, so no built-in loop runs in
            # this process: waking one is all its on_jobs_changed does. Its answer, without
            # building the manager (and the context) for it.
            return True
        return self.scheduler.on_jobs_changed(self.ctx, list(job_ids))

    # -- firing -----------------------------------------------------------------

    def run_now(self, job_id: str) -> RunResult:
        """Run a job now (``hermes-cron run``), through the same claim and run body.

        A manual run does not advance the schedule. Raises ``JobNotFoundError`` for
        an unknown id.
        """
        from .errors import JobNotFoundError
        from .store import GONE, LOST

        result = self.ctx.run_one_job(job_id, None, manual=True)
        if result.claim == GONE:
            if (result.error or "").startswith("quarantined"):
                raise UsageError(f"job {job_id!r} is {result.error}")
            raise JobNotFoundError(job_id)
        if result.claim == LOST:
            raise UsageError(f"job {job_id!r} was not run: {result.error}")
        self.notify([job_id])
        return result

    def fire_due(self, job_id: str, fire_at: str) -> RunResult:
        """Fire ``job_id`` for the due time ``fire_at`` (ISO 8601) through the active
        provider (the agent's fire webhook calls this)."""
        return self.scheduler.fire_due(self.ctx, job_id, fire_at)

    def reconcile(self) -> Any:
        """Converge the active provider toward ``jobs.json``; returns its summary."""
        return self.scheduler.reconcile(self.ctx)

    def tick(self) -> Dict[str, Any]:
        """Catch up, then run what is due now and wait for it (``hermes-cron tick``)."""
        from .builtin_provider import run_due_once

        return run_due_once(self.ctx)

    def start(self, stop_event: Optional[threading.Event] = None) -> Any:
        """Start the active provider on this thread: the built-in blocks until
        ``stop_event`` is set; an external provider returns its summary at once."""
        return self.scheduler.start(self.ctx, stop_event or threading.Event())

    def start_in_thread(self) -> ServiceThread:
        """Start the active provider on a daemon thread; ``.stop(timeout)`` ends it."""
        handle = ServiceThread(self, threading.Event())
        handle.thread.start()
        return handle

    # -- moving between stores ----------------------------------------------------------

    def export_jobs(self) -> Dict[str, Any]:
        """Every record of the store (quarantined ones as they are) as a ``jobs.json``
        document ``{"version": 1, "jobs": [...]}``."""
        return {"version": 1, "jobs": self.store.export_records()}

    def import_jobs(
        self, document: Any, *, replace: bool = False, source: str = ""
    ) -> Dict[str, Any]:
        """Add the jobs of a ``jobs.json`` document, keeping ids, schedules, options, state
        and next run times; claims are dropped. An id already in the store is left alone
        unless ``replace``. Returns ``{"imported": [ids], "kept": [ids]}``.

        :raises UsageError: the document or one of its records is invalid (nothing is
            imported); ``source`` names it in the message.
        """
        from .store.records import Invalid
        from .store.rules import imported

        where = f"{source}: " if source else ""
        if not isinstance(document, dict) or not isinstance(document.get("jobs"), list):
            raise UsageError(
                f'{where}expected a jobs.json document {{"version": 1, "jobs": [...]}}'
            )
        version = document.get("version")
        if version != 1 or isinstance(version, bool):
            raise UsageError(f"{where}unsupported version {version!r} (this hermes-cron reads 1)")
        records = document["jobs"]
        for index, record in enumerate(records):
            try:
                imported(record)
            except Invalid as exc:
                job_id = record.get("id") if isinstance(record, dict) else None
                named = f" (id {job_id!r})" if isinstance(job_id, str) else ""
                raise UsageError(
                    f"{where}record #{index + 1}{named}: {exc}; nothing was imported"
                ) from None
        done, kept = self.store.import_records(records, replace=replace)
        if done:
            self.notify(done)
        return {"imported": done, "kept": kept}

    def init_store(self) -> str:
        """Create or upgrade the store's schema (``hermes-cron store init``); says what
        was done. The file store has nothing to create."""
        init = getattr(self.store, "init_schema", None)
        if init is None:
            return f"{self.store.describe()}: nothing to create (the file store needs no setup)"
        return f"{self.store.describe()}: {init()}"

    # -- observers, metrics, shutdown ------------------------------------------------

    @property
    def metrics(self) -> Any:
        """The Prometheus metrics of this service (``hermes_cron.metrics.CronMetrics``),
        created on first use: they count from then on."""
        if self._metrics is None:
            from .metrics import CronMetrics

            self._metrics = CronMetrics(self)
        return self._metrics

    def start_metrics_server(self, port: Optional[int] = None) -> Any:
        """Serve ``/metrics`` on ``127.0.0.1:port`` (default ``cron.metrics_port``) in a
        background thread; None when the port is 0. ``close()`` stops it.

        :raises ServeError: the port cannot be bound.
        """
        if port is None:
            port = int(cfg_get(self.config, "cron", "metrics_port", default=0) or 0)
        if not port:
            return None
        if self._metrics_server is None:
            self._metrics_server = self.metrics.serve(port)
        return self._metrics_server

    def close(self, timeout: float = OBSERVER_FLUSH_TIMEOUT) -> bool:
        """Stop the metrics server and deliver queued run reports to the observers (at
        most ``timeout`` seconds); returns whether every report was delivered."""
        server, self._metrics_server = self._metrics_server, None
        if server is not None:
            server.close()
        delivered = True
        if self.ctx.observers_started:  # else no row was recorded through this service
            delivered = self.ctx.observers.close(timeout)
        # Last: the observers' reports were written; now release the store's
        # connections and threads (PostgreSQL; nothing for the file store).
        self.store.close()
        return delivered

    def __enter__(self) -> CronService:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def plugins(self) -> List[Dict[str, Any]]:
        """SPEC §8 ``plugins``: every discovered plugin, provider or extension, as
        ``{name, kind, source, path, loaded, error}`` (plus details). Imports every
        plugin that is neither shadowed nor disabled."""
        from .extensions import plugin_rows

        records = self.extensions
        if records is None:
            from .discovery import discover_plugins

            records = discover_plugins(self.paths.home)
        rows = plugin_rows(records, config=self.config, active=self.scheduler.name)
        for row in rows:
            if row["kind"] == "provider" and row["name"] == self.scheduler.name:
                row["loaded"] = True
        return rows

    # -- reports ----------------------------------------------------------------------

    def _record_error(self, message: str) -> None:
        record_error(self.paths, message, now=self.clock.now(), source="provider")

    def status(self) -> Dict[str, Any]:
        """SPEC §8 ``status``: ``{provider, requested, fallback_reason, heartbeat_at,
        last_error, jobs, next_due}`` plus details (config error, quarantined records,
        the running process seen in ``cron/status.json``).

        :raises StoreCorruptError: when ``jobs.json`` cannot be read.
        """
        census = self.store.census()
        upcoming = self.store.upcoming(NEXT_DUE_COUNT)
        disk = read_status(self.paths)
        last_error = disk.get("last_error")
        last_error_at = disk.get("last_error_at")
        mine = self.scheduler.last_error
        if mine is not None and (last_error_at is None or mine.at > str(last_error_at)):
            last_error, last_error_at = f"provider {self.scheduler.name!r}: {mine.message}", mine.at
        from .status_file import is_live
        from .timeutil import to_iso

        now = self.clock.now()
        schedulers = [
            {
                "host": info.get("host"),
                "pid": info.get("pid"),
                "provider": info.get("provider"),
                "heartbeat_at": info.get("heartbeat_at"),
                "live": is_live(info, now),
            }
            for info in self.store.schedulers()
        ]
        beats = [str(s["heartbeat_at"]) for s in schedulers if s["heartbeat_at"]]
        return {
            "provider": self.scheduler.name,
            "requested": self.scheduler.requested,
            "fallback_reason": self.scheduler.fallback_reason,
            "store": self.store.describe(),
            "heartbeat_at": max(beats) if beats else disk.get("heartbeat_at"),
            "last_error": last_error,
            "jobs": census.jobs,
            "next_due": [{"id": job_id, "next_run_at": to_iso(at)} for job_id, at in upcoming],
            "last_error_at": last_error_at,
            "config_error": self.config_error,
            "jobs_by_state": census.states,
            "quarantined": [
                {"index": q.index, "id": q.job_id, "error": q.error} for q in census.quarantined
            ],
            "schedulers": schedulers,
            "running_process": self._running_process(disk),
            "home": str(self.paths.home),
        }

    def _running_process(self, disk: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """What ``cron/status.json`` says about the process running a provider, with
        ``heartbeat_age_s`` and ``alive`` (a heartbeat within three intervals, not stopped)."""
        from .status_file import HEARTBEAT_INTERVAL
        from .timeutil import parse_iso

        keys = ("provider", "pid", "host", "started_at", "stopped_at", "running", "runs")
        info = {k: disk.get(k) for k in keys if k in disk}
        if not info and not disk.get("heartbeat_at"):
            return None
        age: Optional[float] = None
        try:
            if disk.get("heartbeat_at"):
                age = (self.clock.now() - parse_iso(disk["heartbeat_at"])).total_seconds()
        except (TypeError, ValueError):
            age = None
        info["heartbeat_age_s"] = None if age is None else round(age, 3)
        info["alive"] = bool(
            age is not None and not disk.get("stopped_at") and age < 3 * HEARTBEAT_INTERVAL
        )
        return info

    def providers(self) -> List[Dict[str, Any]]:
        """SPEC §8 ``providers``: the built-in and every discovered provider; exactly one
        entry has ``active: true``. Imports every provider that is not shadowed and asks
        its ``is_available`` (offline, bounded)."""
        from . import builtin_provider as builtin_module
        from .discovery import discover_providers
        from .plugin_manager import get_plugin_manager, register_provider

        active = self.scheduler
        rows: List[Dict[str, Any]] = [
            {
                "name": BUILTIN_NAME,
                "source": "builtin",
                "path": builtin_module.__file__,
                "available": True,
                "active": active.name == BUILTIN_NAME,
                "shadowed_by": None,
                "error": None,
                "description": "in-process scheduler (always available)",
                "version": "",
                "requested": active.requested.strip() in ("", BUILTIN_NAME),
            }
        ]
        for record in discover_providers(self.paths.home):
            if record.kind == "extension" and record.name != active.requested.strip():
                continue  # an extension is no provider (``plugins`` lists it)
            row = record.as_dict()
            row["available"] = None
            row["active"] = False
            row["requested"] = record.name == active.requested.strip() and not record.shadowed_by
            if record.shadowed_by is None:
                if active.plugin is not None and record.name == active.name:
                    row["available"] = True
                    row["active"] = True
                    row["path"] = active.path or row["path"]
                elif row["requested"] and active.fallback_reason:
                    # Already tried by the resolver: report its verdict, do not ask again
                    # (an is_available that raised or hung was asked: not available).
                    row["available"] = None if record.error else bool(active.requested_available)
                    row["error"] = record.error or active.fallback_reason
                else:
                    plugin = record.load()
                    row["path"] = record.path
                    if plugin is not None and record.kind == "extension":
                        continue  # found out by importing it: not a provider
                    if plugin is not None:
                        probe_pm = get_plugin_manager()
                        try:
                            register_provider(probe_pm, plugin, record.name)
                            probe = ActiveScheduler(
                                probe_pm, name=record.name, plugin=plugin, source=record.source
                            )
                            row["available"] = probe.is_available(self.config)
                        except Exception as exc:
                            row["error"] = str(exc)
                            row["available"] = False
                    row["error"] = row["error"] or record.error
            rows.append(row)
        return rows


__all__ = ["CronService", "ServiceThread"]
