"""``humanloop-logging check``: the key and the way to Humanloop, checked with a request that
creates nothing, against both stand-in flavours, the real FastAPI services, and every kind of
misconfiguration, on 127.0.0.1. The outputs are compared line for line (ports and milliseconds
aside): they are what a deploy log shows."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import (
    child_env,
    closed_port_base_url,
    free_port,
    self_signed_tls_server,
)

from humanloop_logging.cli import main
from humanloop_logging.testing import FLAVOURS, FakeHumanloop

KEY = "hl-check-secret-4f2a9c"
#: The real services' key (tests/fidelity/service.py).
REAL_KEY = "hl-test-key"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def plain_env(**extra: str) -> dict[str, str]:
    """A child's environment without HUMANLOOP_ settings or proxies of this machine."""
    env = {k: v for k, v in child_env().items() if k.lower() not in PROXY_VARIABLES}
    env.update(extra)
    return env


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m humanloop_logging check ARGS`` in a child process; the key never in its output."""
    result = subprocess.run(
        [sys.executable, "-m", "humanloop_logging", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(**env),
        check=False,
    )
    assert KEY not in result.stdout + result.stderr
    return result


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without HUMANLOOP_ settings or proxies, for in-process runs."""
    for name in list(os.environ):
        if name.startswith("HUMANLOOP_") or name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    return monkeypatch


def check_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The command run in this process: its exit status and stdout (the key never in either)."""
    status = main(["check", *args])
    out, err = capsys.readouterr()
    assert err == ""
    assert KEY not in out
    return status, out


def shown(output: str) -> str:
    """The output with its timings made constant."""
    return re.sub(r" in \d+ ms$", " in N ms", output, flags=re.MULTILINE)


def local_report(
    base_url: str, *, key_from: str = "HUMANLOOP_API_KEY", length: int = len(KEY)
) -> str:
    """The lines every check of a loopback http:// base URL prints before its answer."""
    port = base_url.split(":")[2].split("/", maxsplit=1)[0]
    return (
        f"settings: ok: api_key from {key_from} ({length} characters, not shown), base_url "
        f"{base_url} from --base-url, timeout 10s (default)\n"
        f"sending:  POST {base_url}/feedback with an empty array, which creates nothing\n"
        "proxy:    none\n"
        "DNS:      ok: 127.0.0.1 is an address, nothing to resolve\n"
        f"connect:  ok: 127.0.0.1:{port}\n"
        "TLS:      skipped: http:// (no TLS)\n"
    )


def ok_line(base_url: str) -> str:
    return (
        f"OK: {base_url} accepted the API key (HTTP 200 to an empty array, nothing created); "
        "feedback can be sent with these settings\n"
    )


# -- the probe: answered 200 and creating nothing, everywhere ------------------------------------


def probe(url: str, key: str) -> tuple[int, Any]:
    response = requests.post(
        url, data=b"[]", headers={"X-API-KEY": key, "Content-Type": "application/json"}, timeout=30
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_stand_in_answers_the_probe_200_with_nothing(flavour: str) -> None:
    """An empty array: 200 ``[]`` with the key (no item, no id), 401 with another, nothing kept."""
    with FakeHumanloop(api_key=KEY, flavour=flavour) as fake:
        assert probe(fake.url, KEY) == (200, [])
        assert probe(fake.url, "wrong") == (401, {"detail": "Invalid API key"})
        assert fake.received == []


def real_pythons() -> list[str]:
    from fidelity.harness import other_pythons

    return [sys.executable, *other_pythons()]


@pytest.fixture(
    scope="module", params=real_pythons(), ids=lambda python: Path(python).parent.parent.name
)
def real_base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real FastAPI service of tests/fidelity under each interpreter (its FastAPI/pydantic)."""
    from fidelity.harness import real_service

    with real_service(request.param) as service:
        yield service.base_url


@pytest.mark.slow
def test_the_real_service_answers_the_probe_200_with_nothing(real_base_url: str) -> None:
    """The FastAPI app of the v4 document answers the probe as the stand-in does: the key is
    checked after the body is read, and an empty array is a valid body that creates nothing."""
    assert probe(f"{real_base_url}/feedback", REAL_KEY) == (200, [])
    assert probe(f"{real_base_url}/feedback", "wrong") == (401, {"detail": "Invalid API key"})
    status, body = probe(f"{real_base_url.removesuffix('/v4')}/feedback", REAL_KEY)
    assert (status, body) == (404, {"detail": "Not Found"})


# -- OK ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_ok_against_each_stand_in_flavour_creates_nothing(
    flavour: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0, a line per step, and the stand-in received one empty array and accepted nothing."""
    with FakeHumanloop(api_key=KEY, flavour=flavour) as fake:
        clean_env.setenv("HUMANLOOP_API_KEY", KEY)
        status, out = check_here(capsys, "--base-url", fake.base_url)
        assert status == 0
        assert shown(out) == (
            local_report(fake.base_url)
            + "answer:   ok: HTTP 200 in N ms\n"
            + ok_line(fake.base_url)
        )
        assert fake.received == []
        assert [(r.method, r.path, r.body, r.status) for r in fake.requests] == [
            ("POST", "/v4/feedback", b"[]", 200)
        ]
        assert fake.requests[0].headers["x-api-key"] == KEY


@pytest.mark.slow
def test_ok_against_the_real_service_and_its_401(
    real_base_url: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real FastAPI service: its key passes (exit 0), another is refused (exit 3)."""
    clean_env.setenv("HUMANLOOP_API_KEY", REAL_KEY)
    status, out = check_here(capsys, "--base-url", real_base_url)
    assert status == 0, out
    assert shown(out).endswith("answer:   ok: HTTP 200 in N ms\n" + ok_line(real_base_url))

    clean_env.setenv("HUMANLOOP_API_KEY", KEY)
    status, out = check_here(capsys, "--base-url", real_base_url)
    assert status == 3, out
    assert out.splitlines()[-1] == (
        f"FAILED: Humanloop refused the API key (HTTP 401 from POST {real_base_url}/feedback: "
        "Invalid API key): check api_key / HUMANLOOP_API_KEY"
    )


def test_ok_run_as_a_command_with_the_key_from_the_environment() -> None:
    """The installed command, in a child process: exit 0 and the same lines."""
    with FakeHumanloop(api_key=KEY) as fake:
        result = run_check("--base-url", fake.base_url, HUMANLOOP_API_KEY=KEY)
        assert (result.returncode, result.stderr) == (0, "")
        assert shown(result.stdout) == (
            local_report(fake.base_url)
            + "answer:   ok: HTTP 200 in N ms\n"
            + ok_line(fake.base_url)
        )
        assert fake.received == []


def test_settings_come_from_the_library_s_environment_variables(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HUMANLOOP_BASE_URL and HUMANLOOP_FEEDBACK_TIMEOUT, as a handler reads them; an argument
    wins over its variable; a key given as --api-key is said to be from there."""
    with FakeHumanloop(api_key=KEY) as fake:
        clean_env.setenv("HUMANLOOP_BASE_URL", fake.base_url)
        clean_env.setenv("HUMANLOOP_FEEDBACK_TIMEOUT", "7")
        status, out = check_here(capsys, "--api-key", KEY)
        assert status == 0
        assert out.splitlines()[0] == (
            f"settings: ok: api_key from --api-key ({len(KEY)} characters, not shown), base_url "
            f"{fake.base_url} from HUMANLOOP_BASE_URL, timeout 7s from HUMANLOOP_FEEDBACK_TIMEOUT"
        )
        status, out = check_here(capsys, "--api-key", KEY, "--timeout", "3")
        assert status == 0
        assert out.splitlines()[0].endswith("timeout 3s from --timeout")
        assert fake.received == []


def test_a_disabled_shipper_is_said_and_still_checked(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HUMANLOOP_FEEDBACK_ENABLED=0 with a key: the check runs and says the app sends nothing."""
    with FakeHumanloop(api_key=KEY) as fake:
        clean_env.setenv("HUMANLOOP_API_KEY", KEY)
        clean_env.setenv("HUMANLOOP_FEEDBACK_ENABLED", "0")
        status, out = check_here(capsys, "--base-url", fake.base_url)
    assert status == 0
    assert out.splitlines()[0].endswith(
        "enabled=False from HUMANLOOP_FEEDBACK_ENABLED: the application sends nothing, but the "
        "key and connection are checked"
    )


# -- what can be wrong, each in the library's words ----------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_wrong_key_exits_3(flavour: str) -> None:
    """401 from either flavour: the library's AuthenticationError words, exit 3."""
    with FakeHumanloop(api_key="hl-the-right-key", flavour=flavour) as fake:
        result = run_check("--base-url", fake.base_url, HUMANLOOP_API_KEY=KEY)
        assert fake.received == []
    assert (result.returncode, result.stderr) == (3, "")
    assert shown(result.stdout) == (
        local_report(fake.base_url)
        + "answer:   failed: HTTP 401 in N ms\n"
        + f"FAILED: Humanloop refused the API key (HTTP 401 from POST {fake.base_url}/feedback: "
        "Invalid API key): check api_key / HUMANLOOP_API_KEY\n"
    )


def test_a_base_url_without_v4_exits_4() -> None:
    """The path lacks /v4: the service's 404, and the fix named."""
    with FakeHumanloop(api_key=KEY) as fake:
        base = fake.base_url.removesuffix("/v4")
        result = run_check("--base-url", base, HUMANLOOP_API_KEY=KEY)
        assert fake.received == []
    assert result.returncode == 4
    assert shown(result.stdout) == (
        local_report(base)
        + "answer:   failed: HTTP 404 in N ms\n"
        + f"FAILED: POST {base}/feedback was not found (HTTP 404: Not Found): base_url should end "
        f"in /v4, e.g. https://api.humanloop.com/v4 (base_url is {base})\n"
    )


def test_a_refused_connection_exits_1() -> None:
    """Nothing listens on the port: the connect line says so, the problem names base_url."""
    base = closed_port_base_url()
    port = base.split(":")[2].split("/")[0]
    result = run_check("--base-url", base, HUMANLOOP_API_KEY=KEY)
    assert result.returncode == 1
    lines = local_report(base).splitlines()
    lines[4] = f"connect:  failed: 127.0.0.1:{port}: {os.strerror(errno.ECONNREFUSED)}"
    assert result.stdout.splitlines() == [
        *lines,
        "answer:   skipped: the request never reached the service",
        f"FAILED: cannot reach Humanloop at 127.0.0.1:{port} (connection refused) for POST "
        f"{base}/feedback: is the service running, and are host and port in base_url right?",
    ]


def test_a_host_that_does_not_resolve_exits_1() -> None:
    """A name under .invalid (RFC 6761: never resolves): DNS fails, nothing else is tried."""
    base = "https://humanloop-check.invalid/v4"
    result = run_check("--base-url", base, HUMANLOOP_API_KEY=KEY)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[2:3] == ["proxy:    none"]
    assert lines[3].startswith("DNS:      failed: humanloop-check.invalid: ")
    assert lines[4:] == [
        "connect:  skipped: no address",
        "TLS:      skipped: no connection",
        "answer:   skipped: the request never reached the service",
        "FAILED: cannot reach Humanloop: the host name humanloop-check.invalid could not be "
        f"resolved (DNS) for POST {base}/feedback: check the host in base_url",
    ]


def test_https_to_a_plain_http_port_exits_1() -> None:
    """https:// to the stand-in's plain HTTP port: the handshake fails, and the fix is asked."""
    with FakeHumanloop(api_key=KEY) as fake:
        base = fake.base_url.replace("http://", "https://")
        result = run_check("--base-url", base, HUMANLOOP_API_KEY=KEY)
        assert fake.requests == []
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[4:7] == [
        f"connect:  ok: 127.0.0.1:{fake.port}",
        "TLS:      failed",
        "answer:   skipped: the request never reached the service",
    ]
    assert lines[7].startswith(f"FAILED: TLS with 127.0.0.1:{fake.port} failed (")
    assert lines[7].endswith(
        f") for POST {base}/feedback: does the host and port in base_url speak HTTPS?"
    )


def test_an_untrusted_certificate_exits_1_naming_requests_ca_bundle(tmp_path: Path) -> None:
    """A certificate no CA in the bundle signed, as a network that re-signs TLS shows it."""
    with self_signed_tls_server(tmp_path) as port:
        base = f"https://127.0.0.1:{port}/v4"
        result = run_check("--base-url", base, HUMANLOOP_API_KEY=KEY)
    assert result.returncode == 1
    problem = result.stdout.splitlines()[-1]
    assert problem.startswith(
        f"FAILED: TLS with 127.0.0.1:{port} failed (certificate verify failed"
    )
    assert problem.endswith(
        f"for POST {base}/feedback: if a proxy or firewall on this network re-signs TLS, set "
        "REQUESTS_CA_BUNDLE to its CA bundle"
    )
    assert "TLS:      failed" in result.stdout.splitlines()


def test_an_unreachable_proxy_is_named_as_the_proxy() -> None:
    """HTTP_PROXY at a closed port (NO_PROXY unset, so loopback goes through it too): the proxy
    is what fails, by its host and port, never its credentials."""
    proxy_port = free_port()
    with FakeHumanloop(api_key=KEY) as fake:
        result = run_check(
            "--base-url",
            fake.base_url,
            HUMANLOOP_API_KEY=KEY,
            HTTP_PROXY=f"http://user:proxy-secret@127.0.0.1:{proxy_port}",
        )
        assert fake.requests == []
    assert result.returncode == 1
    assert "proxy-secret" not in result.stdout
    lines = local_report(fake.base_url).splitlines()
    lines[2:5] = [
        f"proxy:    127.0.0.1:{proxy_port} from HTTP_PROXY",
        "DNS:      ok: proxy 127.0.0.1 is an address, nothing to resolve",
        f"connect:  failed: proxy 127.0.0.1:{proxy_port}: {os.strerror(errno.ECONNREFUSED)}",
    ]
    assert result.stdout.splitlines() == [
        *lines,
        "answer:   skipped: the request never reached the service",
        f"FAILED: cannot reach Humanloop through 127.0.0.1:{proxy_port} (connection refused) for "
        f"POST {fake.base_url}/feedback: check HTTPS_PROXY / HTTP_PROXY (and NO_PROXY)",
    ]


def test_no_proxy_takes_loopback_past_the_proxy() -> None:
    """The same proxy with NO_PROXY=127.0.0.1: requests goes straight there, and the check says
    why no proxy is used."""
    with FakeHumanloop(api_key=KEY) as fake:
        result = run_check(
            "--base-url",
            fake.base_url,
            HUMANLOOP_API_KEY=KEY,
            HTTP_PROXY=f"http://127.0.0.1:{free_port()}",
            NO_PROXY="127.0.0.1",
        )
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[2] == "proxy:    none: NO_PROXY leaves 127.0.0.1 out"


def test_a_service_that_never_answers_times_out_and_exits_1() -> None:
    """The stand-in reads the request and holds it: cut off at --timeout, in the library's words
    (requests' read timeout and the library's total limit are both at 0.5 s: either may end it)."""
    with FakeHumanloop(api_key=KEY) as fake:
        fake.hang_next(1)
        result = run_check("--base-url", fake.base_url, "--timeout", "0.5", HUMANLOOP_API_KEY=KEY)
        assert fake.received == []
    assert result.returncode == 1
    lines = local_report(fake.base_url).splitlines()
    lines[0] = lines[0].replace("timeout 10s (default)", "timeout 0.5s from --timeout")
    *report, problem = result.stdout.splitlines()
    assert report == [*lines, "answer:   failed: none came (timeout)"]
    assert problem in (
        f"FAILED: timed out: no answer from 127.0.0.1:{fake.port} within timeout=0.5s for POST "
        f"{fake.base_url}/feedback: the service (or a proxy on the way) is slow or hanging",
        f"FAILED: timed out in total: POST {fake.base_url}/feedback got no whole answer from "
        f"127.0.0.1:{fake.port} within timeout=0.5s; the service, or a proxy on the way, is "
        "hanging or trickling its answer",
    )


@pytest.mark.parametrize(
    ("status", "exit_status"), [(503, 5), (429, 5), (500, 5), (308, 4)], ids=str
)
def test_other_error_answers_have_their_own_exit_status(
    status: int,
    exit_status: int,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 5xx or 429 is 5 (try again later); a redirect, which is never followed, is base_url's."""
    with FakeHumanloop(api_key=KEY) as fake:
        fake.fail_next(1, status)
        clean_env.setenv("HUMANLOOP_API_KEY", KEY)
        code, out = check_here(capsys, "--base-url", fake.base_url)
    assert code == exit_status
    assert shown(out).splitlines()[-2] == f"answer:   failed: HTTP {status} in N ms"
    assert out.splitlines()[-1].startswith(f"FAILED: {'POST' if status == 308 else 'HTTP'}")


def test_a_missing_key_exits_2_naming_the_variable() -> None:
    """No --api-key and no HUMANLOOP_API_KEY: the ConfigurationError, and nothing sent."""
    with FakeHumanloop(api_key=KEY) as fake:
        result = run_check("--base-url", fake.base_url)
        assert fake.requests == []
    assert (result.returncode, result.stderr) == (2, "")
    assert result.stdout.splitlines() == [
        "settings: failed",
        "FAILED: no api_key: pass api_key= or set HUMANLOOP_API_KEY (for local tests, "
        "FakeHumanloop.api_key; to run without sending feedback, set HUMANLOOP_FEEDBACK_ENABLED=0)",
    ]


def test_a_missing_key_exits_2_even_when_disabled() -> None:
    """HUMANLOOP_FEEDBACK_ENABLED=0 needs no key to run, but a check of the key needs one."""
    result = run_check(HUMANLOOP_FEEDBACK_ENABLED="0")
    assert result.returncode == 2
    assert "no api_key: pass api_key= or set HUMANLOOP_API_KEY" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HUMANLOOP_FEEDBACK_TIMEOUT": "-1"},
            "timeout must be a finite number > 0, got -1.0 (from HUMANLOOP_FEEDBACK_TIMEOUT)",
        ),
        (
            {"HUMANLOOP_BASE_URL": "http://humanloop.example/v4"},
            "refusing to send the API key over plain http:// to humanloop.example; use https://, "
            "or pass allow_insecure_http=True (HUMANLOOP_ALLOW_INSECURE_HTTP=1) if you mean it",
        ),
        (
            {"HUMANLOOP_FEEDBACK_BATCH_SIZE": "lots"},
            "batch_size must be a whole number >= 1, got 'lots' (from HUMANLOOP_FEEDBACK_BATCH_SIZE)",
        ),
    ],
    ids=["timeout", "insecure", "batch_size"],
)
def test_bad_settings_exit_2_as_an_application_would_refuse_them(
    env: dict[str, str], message: str
) -> None:
    """Every HUMANLOOP_ variable is read and checked, as the handler's constructor does."""
    result = run_check(HUMANLOOP_API_KEY=KEY, **env)
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["settings: failed", f"FAILED: {message}"]


def test_a_key_passed_for_the_url_is_not_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    """The key given as --base-url by mistake: refused without echoing it."""
    status, out = check_here(capsys, "--base-url", KEY, "--api-key", "hl-something")
    assert status == 2
    assert "api_key and base_url swapped?" in out


# -- --json --------------------------------------------------------------------------------------


def parse_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1  # one object on one line, nothing else
    return document


def test_json_says_ok_checks_and_no_problem() -> None:
    with FakeHumanloop(api_key=KEY) as fake:
        document = parse_json(
            run_check("--json", "--base-url", fake.base_url, HUMANLOOP_API_KEY=KEY)
        )
    assert (document["ok"], document["exit_status"], document["problem"]) == (True, 0, None)
    assert document["request"] == f"POST {fake.base_url}/feedback"
    assert [(c["check"], c["result"]) for c in document["checks"]] == [
        ("settings", "ok"),
        ("proxy", "info"),
        ("DNS", "ok"),
        ("connect", "ok"),
        ("TLS", "skipped"),
        ("answer", "ok"),
    ]


def test_json_names_the_problem_and_its_category() -> None:
    with FakeHumanloop(api_key="hl-the-right-key") as fake:
        result = run_check("--json", "--base-url", fake.base_url, HUMANLOOP_API_KEY=KEY)
    document = parse_json(result)
    assert result.returncode == document["exit_status"] == 3
    assert document["ok"] is False
    assert document["problem"] == {
        "category": "auth",
        "message": f"Humanloop refused the API key (HTTP 401 from POST {fake.base_url}/feedback: "
        "Invalid API key): check api_key / HUMANLOOP_API_KEY",
    }


def test_json_of_bad_settings() -> None:
    document = parse_json(run_check("--json"))
    assert document["exit_status"] == 2
    assert document["request"] is None
    assert document["checks"] == [{"check": "settings", "result": "failed", "detail": ""}]
    assert document["problem"]["category"] == "configuration"
    assert "HUMANLOOP_API_KEY" in document["problem"]["message"]


def test_the_key_never_appears_in_any_output(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Echoed back by a server in its error body, the key is still not printed (text or JSON)."""
    with FakeHumanloop(api_key=KEY) as fake:
        fake.fail_next(2, 400, body={"detail": f"bad request with X-API-KEY {KEY}"})
        for extra in ((), ("--json",)):
            code, out = check_here(capsys, "--api-key", KEY, "--base-url", fake.base_url, *extra)
            assert code == 5
            assert "[redacted]" in out


def test_the_command_starts_without_the_http_stack(tmp_path: Path) -> None:
    """``--help`` loads no requests: the check imports it when it runs, as the other commands."""
    code = (
        "import sys\nfrom humanloop_logging.cli import main\n"
        "try:\n    main(['check', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "Exit status: 0 OK" in result.stdout
