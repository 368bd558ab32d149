"""Fuzz ``config.yaml``: random bytes, random YAML, random values under every key.

Promise: reading it gives a config or a one-line ``ConfigError`` naming the file; the
service always starts (on the defaults for what is broken, with the built-in provider
when the provider cannot be read); the command line never prints a traceback.
"""

from __future__ import annotations

import yaml
from fuzzkit import a_home, clean_stderr, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hermes_cron.config import DEFAULTS, load_config, read_config_file
from hermes_cron.errors import ConfigError
from hermes_cron.service import CronService

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["chronos", "builtin", "UTC", "Mars/Base", "0", "-1", "1e309", "nan"])
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.sampled_from(
    ["provider", "timezone", "max_workers", "job_timeout", "misfire_grace", "claim_ttl", "chronos"]
)


@st.composite
def config_texts(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "yaml", "cron"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        pieces = st.sampled_from(
            [
                "cron:",
                "\n",
                "  ",
                "provider: ",
                ":",
                "- ",
                "{",
                "}",
                "[",
                "&a",
                "*a",
                "!!python/object:os.system",
                "%YAML 1.1\n",
                "---\n",
                "...\n",
                "\t",
                "'",
                '"',
                "#",
                "? ",
                "<<: *a",
                "\x00",
                "\ufeff",
            ]  # fmt: skip
        )
        return "".join(draw(st.lists(pieces | st.text(max_size=5), max_size=15))).encode(
            "utf-8", "surrogatepass"
        )
    if kind == "yaml":
        return yaml.safe_dump(draw(VALUES)).encode()
    cron = draw(st.dictionaries(KEYS, VALUES, max_size=4))
    return yaml.safe_dump({"cron": cron}).encode()


@FUZZ
@given(data=config_texts())
@example(data=b"cron:\n")  # found by this test: an empty section dropped every default
@example(data=b"cron:\n  chronos:\n")
def test_any_config_file_is_a_config_or_a_config_error(data: bytes) -> None:
    with a_home() as home:
        path = home / "config.yaml"
        path.write_bytes(data)
        try:
            parsed = read_config_file(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message, repr(message)
            assert "Traceback" not in message
        else:
            assert isinstance(parsed, dict)
            cron = load_config(home)["cron"]
            assert isinstance(cron, dict)
            if parsed.get("cron") is None:  # absent or empty: every default is there
                assert cron == DEFAULTS["cron"]
            elif isinstance(parsed["cron"], dict) and parsed["cron"].get("chronos") is None:
                assert cron["chronos"] == DEFAULTS["cron"]["chronos"]
        # The service starts whatever the file says, and says what was wrong.
        service = CronService.from_home(home, availability_timeout=0.5)
        assert service.provider_name in ("builtin", "chronos")
        status = service.status()
        assert status["provider"] == service.provider_name
        if status["config_error"] is not None:
            assert "\n" not in status["config_error"]


@FUZZ
@given(data=config_texts())
@example(data=b"cron:\n  timezone: '0'\n")  # found by this test: `next` exited 2
def test_the_cli_never_prints_a_traceback_for_any_config(data: bytes) -> None:
    with a_home() as home:
        (home / "config.yaml").write_bytes(data)
        for argv in (["status", "--json"], ["list"], ["next", "every", "5m", "--count", "2"]):
            code, out, err = run_cli("--home", str(home), *argv)
            assert code == 0, (argv, err)
            assert clean_stderr(err), err
        code, out, err = run_cli("--home", str(home), "add", "every", "1h", "--", "true")
        assert code == 0 and out.strip(), err
