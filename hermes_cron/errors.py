"""Error types. Each carries a message a user can act on; the CLI prints it on one line."""

from __future__ import annotations


class HermesCronError(Exception):
    """Base of every error the library raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it.
    """

    exit_code = 2


class UsageError(HermesCronError):
    """Bad input from a user: a bad argument, an unknown job id, an invalid value."""


class ScheduleError(UsageError):
    """A schedule text that cannot be parsed, or a time zone that does not exist."""


class JobNotFoundError(UsageError):
    """No job with the given id is in the store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class ConfigError(HermesCronError):
    """``config.yaml`` cannot be read or parsed; the message names the file and line."""


class StoreError(HermesCronError):
    """The job store cannot be read or written."""


class StoreCorruptError(StoreError):
    """``jobs.json`` is not valid; it is never overwritten while in this state."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (PostgreSQL down or unreachable): the message is one
    line naming the store without its password. The CLI exits 1, not 2: the command
    was fine, the store was not there."""

    exit_code = 1


class LockTimeoutError(StoreError):
    """The cross-process lock was not acquired within its bound."""


class AuthError(HermesCronError):
    """Provider login state is missing, unreadable, or a token refresh failed."""


class PluginError(HermesCronError):
    """A plugin failed to load or to validate."""


class ServeError(HermesCronError):
    """An HTTP endpoint cannot be served (the webhook, the metrics): e.g. the address is in use."""


class NASError(HermesCronError):
    """A call to the remote trigger service (NAS) failed; the message names the call and status.

    ``retryable`` is True for failures that may heal by themselves (transport
    errors, timeouts, 5xx): callers stop talking to NAS for the rest of the
    current pass instead of waiting out every remaining call.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
