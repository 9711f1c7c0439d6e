"""``humanloop-logging serve``: the stand-in run from the command line, in a real child process."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Optional

import pytest
import requests
from support import Serve

from humanloop_logging.cli import main

URL_LINE = re.compile(r"^Humanloop stand-in listening on (http://127\.0\.0\.1:(\d+)/v4)$")
INSPECTOR_LINE = re.compile(r"^Inspector: (http://127\.0\.0\.1:(\d+)/)$")

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve --port 0 --api-key k``, killed after the test if it is still running."""
    child = Serve("--port", "0", "--api-key", "k")
    try:
        yield child
    finally:
        child.kill()


@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_like_the_service_and_exits_cleanly(serve: Serve, signum: int) -> None:
    """serve prints its URL and key, answers 200/401/422, and exits 0 on Ctrl-C or SIGTERM."""
    match = URL_LINE.match(serve.line())
    assert match, "the first line names the URL"
    base_url, port = match.group(1), int(match.group(2))
    assert port != 0, "--port 0 prints the port actually bound"
    assert serve.line() == "API key: k"
    url = base_url + "/feedback"
    item = {"type": "rating", "value": "good", "data_id": "dp_1"}

    ok = requests.post(url, json=item, headers={"X-API-KEY": "k"}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["id"].startswith("ann_")
    unauthorised = requests.post(url, json=item, headers={"X-API-KEY": "wrong"}, timeout=10)
    assert unauthorised.status_code == 401
    invalid = requests.post(url, json={"value": 1}, headers={"X-API-KEY": "k"}, timeout=10)
    assert invalid.status_code == 422
    assert ["body", "type"] in [entry["loc"] for entry in invalid.json()["detail"]]

    returncode, stderr = serve.stop(signum)
    assert returncode == 0
    assert stderr == ""
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=item, headers={"X-API-KEY": "k"}, timeout=5)


REQUEST_LINE = re.compile(r"^\d\d:\d\d:\d\d POST /v4/feedback (?P<rest>.*)$")


@posix_only
@pytest.mark.slow
def test_serve_prints_each_request_a_summary_and_records_what_it_accepted(tmp_path: Path) -> None:
    """A line per request, a summary on exit, and --record's JSON lines of accepted items."""
    record = tmp_path / "accepted.jsonl"
    child = Serve("--port", "0", "--api-key", "k", "--flavour", "v2", "--record", str(record))
    try:
        match = URL_LINE.match(child.line())
        assert match
        url = match.group(1) + "/feedback"
        assert child.line() == "API key: k"
        assert child.line().startswith(
            "Answering like current FastAPI on pydantic 2 (--flavour v2)"
        )
        assert child.line() == f"Recording accepted items to {record}"
        assert child.line() == f"Inspector: {url[: -len('v4/feedback')]}"
        assert child.line() == "Press Ctrl-C to stop."

        def sent(body: Any, key: str = "k", data: Optional[bytes] = None) -> str:
            headers = {"X-API-KEY": key, "Content-Type": "application/json"}
            payload = data if data is not None else json.dumps(body).encode()
            requests.post(url, data=payload, headers=headers, timeout=10)
            line = REQUEST_LINE.match(child.line())
            assert line, "each request is one line"
            return line.group("rest")

        good = [{"type": "rating", "value": 1, "data_id": "a"}, {"type": "action", "value": "copy"}]
        assert sent(good) == "200, 2 items"
        bad = [good[0], {"type": "rating", "value": 1, "data_id": 5}, {"value": ["a", 1]}]
        assert sent(bad) == "422, 3 items: item 1: data_id; item 2: type, value, value[1]"
        assert sent({"type": None, "value": 1}) == "422, 1 item: item 0: type"
        assert sent(good, key="wrong") == "401, 2 items: Invalid API key"
        assert sent(None, data=b'[{"type": ') == (
            "422, 0 items: body is not valid JSON: Expecting value (at character 10)"
        )
        assert sent({"type": "issue", "value": ["slow"]}) == "200, 1 item"

        returncode, stderr = child.stop(signal.SIGTERM)
        assert (returncode, stderr) == (0, "")
        assert child.line() == (
            "Received 6 requests: 2 answered 200 (3 items accepted), 1 answered 401, "
            "3 answered 422."
        )
    finally:
        child.kill()
    lines = record.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [*good, {"type": "issue", "value": ["slow"]}]


@pytest.mark.slow
def test_serve_refuses_an_existing_record_file(tmp_path: Path) -> None:
    """--record on a file that exists is refused (exit 2, the file untouched): a restart of the
    stand-in must not wipe what an earlier run recorded."""
    record = tmp_path / "accepted.jsonl"
    record.write_text('{"type": "rating", "value": 1}\n')
    child = Serve("--port", "0", "--api-key", "k", "--record", str(record))
    try:
        returncode = child.process.wait(timeout=30)
        assert child.process.stderr is not None
        stderr = child.process.stderr.read()
    finally:
        child.kill()
    assert returncode == 2
    assert f"{record} exists; give --append" in stderr
    assert record.read_text() == '{"type": "rating", "value": 1}\n'


@posix_only
@pytest.mark.slow
def test_serve_record_append_adds_to_an_existing_file(tmp_path: Path) -> None:
    """--append keeps the earlier lines and adds this run's accepted items after them."""
    record = tmp_path / "accepted.jsonl"
    record.write_text('{"type": "rating", "value": 1}\n')
    child = Serve("--port", "0", "--api-key", "k", "--record", str(record), "--append")
    try:
        match = URL_LINE.match(child.line())
        assert match
        assert banner(child)["Appending"] == f"Appending accepted items to {record}"
        response = requests.post(
            match.group(1) + "/feedback",
            json={"type": "action", "value": "copy"},
            headers={"X-API-KEY": "k"},
            timeout=10,
        )
        assert response.status_code == 200
        returncode, stderr = child.stop(signal.SIGTERM)
        assert (returncode, stderr) == (0, "")
    finally:
        child.kill()
    assert [json.loads(line) for line in record.read_text().splitlines()] == [
        {"type": "rating", "value": 1},
        {"type": "action", "value": "copy"},
    ]


def test_serve_append_without_record_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--append alone would silently do nothing: it is refused with exit status 2 instead."""
    assert main(["serve", "--port", "0", "--append"]) == 2
    assert "--append needs --record FILE" in capsys.readouterr().err


#: Ports development servers take by default: uvicorn, Django, gunicorn and MkDocs (8000), Flask
#: (5000), Rails and create-react-app (3000), Vite (5173), 8080, Jupyter (8888), Streamlit (8501),
#: Gradio (7860), websockets' examples (8765), wrangler (8787).
DEV_SERVER_PORTS = {8000, 5000, 3000, 5173, 8080, 8888, 8501, 7860, 8765, 8787}


def test_serve_default_port_is_one_no_common_dev_server_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stand-in runs beside the app it serves: its default port is not an app server's."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    found = re.search(
        r"--port PORT\s+port to listen on; 0 picks a free one \(default: (\d+)",
        (" ".join(capsys.readouterr().out.split())),
    )
    assert found, "serve --help names the default port"
    assert int(found.group(1)) not in DEV_SERVER_PORTS


@posix_only
@pytest.mark.slow
def test_serve_exits_cleanly_with_a_keep_alive_client_connected(serve: Serve) -> None:
    """An idle keep-alive client does not hold up shutdown."""
    match = URL_LINE.match(serve.line())
    assert match
    with requests.Session() as session:
        response = session.post(
            match.group(1) + "/feedback",
            json={"type": "rating", "value": 1},
            headers={"X-API-KEY": "k"},
            timeout=10,
        )
        assert response.status_code == 200
        returncode, stderr = serve.stop(signal.SIGTERM)
    assert (returncode, stderr) == (0, "")


@posix_only
@pytest.mark.slow
def test_serve_rate_limit_answers_429_beyond_the_burst() -> None:
    """--rate-limit and --burst: the burst is answered 200, the next POST 429 with a Retry-After
    in whole seconds, printed as a line and counted in the summary."""
    child = Serve("--port", "0", "--api-key", "k", "--rate-limit", "0.01", "--burst", "2")
    try:
        match = URL_LINE.match(child.line())
        assert match
        url = match.group(1) + "/feedback"
        assert child.line() == "API key: k"
        assert child.line().startswith("Answering like")
        assert child.line() == (
            "Rate limit: 0.01 requests/s, burst 2; over it, a 429 with a Retry-After in whole "
            "seconds"
        )
        assert INSPECTOR_LINE.match(child.line())
        assert child.line() == "Press Ctrl-C to stop."
        with requests.Session() as session:
            answers = [
                session.post(
                    url, json={"type": "rating", "value": n}, headers={"X-API-KEY": "k"}, timeout=10
                )
                for n in range(3)
            ]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        assert answers[2].json() == {"detail": "Rate limit exceeded"}
        # 100 s to the next token at 0.01/s, less the little that passed since the start.
        assert 90 <= int(answers[2].headers["Retry-After"]) <= 100
        lines = [REQUEST_LINE.match(child.line()) for _ in answers]
        assert [line.group("rest") if line else None for line in lines] == [
            "200, 1 item",
            "200, 1 item",
            "429, 1 item: Rate limit exceeded",
        ]
        returncode, stderr = child.stop(signal.SIGTERM)
        assert (returncode, stderr) == (0, "")
        assert child.line() == (
            "Received 3 requests: 2 answered 200 (2 items accepted), 1 answered 429."
        )
    finally:
        child.kill()


def test_serve_burst_without_a_rate_limit_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--burst alone would silently do nothing: it is refused with exit status 2 instead."""
    assert main(["serve", "--port", "0", "--burst", "5"]) == 2
    assert "burst needs a rate limit" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_reports_a_busy_port_and_exits_1() -> None:
    """A port already in use is a one-line error and exit status 1, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        child = Serve("--port", str(port))
        try:
            returncode = child.process.wait(timeout=30)
            assert child.process.stderr is not None
            stderr = child.process.stderr.read()
        finally:
            child.kill()
    assert returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["serve", "--port", "70000"],
        ["serve", "--port", "http"],
        ["serve", "--flavour", "v3"],
        ["serve", "--rate-limit", "-1"],
        ["serve", "--rate-limit", "fast"],
        ["serve", "--rate-limit", "nan"],
        ["serve", "--rate-limit", "5", "--burst", "0"],
        ["serve", "--rate-limit", "5", "--retry-after", "date"],
        ["bogus"],
    ],
    ids=[
        "no-command",
        "port-too-big",
        "port-not-a-number",
        "unknown-flavour",
        "negative-rate",
        "rate-not-a-number",
        "rate-not-finite",
        "burst-zero",
        "unknown-retry-after",
        "unknown-command",
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad command lines are argparse usage errors (exit 2) with a message on stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: humanloop-logging" in capsys.readouterr().err


def test_serve_offers_every_flavour_of_the_stand_in(capsys: pytest.CaptureFixture[str]) -> None:
    """--flavour's choices, written out in the CLI so parsing imports no stand-in, are exactly
    the stand-in's flavours."""
    from humanloop_logging.testing import FLAVOURS

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    assert "{" + ",".join(FLAVOURS) + "}" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    from humanloop_logging import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"humanloop-logging {__version__}"


def _console_scripts() -> list[EntryPoint]:
    found = entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        return list(found.select(group="console_scripts"))
    return list(found.get("console_scripts", []))  # Python 3.9: a dict of groups


def test_console_script_entry_point_is_main() -> None:
    """The installed ``humanloop-logging`` script runs humanloop_logging.cli:main."""
    # A source checkout with an egg-info next to the installed copy lists it twice: same target.
    scripts = [ep for ep in _console_scripts() if ep.name == "humanloop-logging"]
    assert {ep.value for ep in scripts} == {"humanloop_logging.cli:main"}
    assert scripts[0].load() is main


def banner(child: Serve) -> dict[str, str]:
    """The lines serve prints before "Press Ctrl-C to stop.", by what they start with."""
    lines: dict[str, str] = {}
    while (line := child.line()) != "Press Ctrl-C to stop.":
        lines[line.split(" ", 1)[0]] = line
    return lines


@posix_only
@pytest.mark.slow
def test_serve_prints_the_inspector_url_and_serves_the_page(serve: Serve) -> None:
    """The banner names the inspector's page, which is served; the page's own requests are not
    request lines, the feedback requests are."""
    lines = banner(serve)
    match = INSPECTOR_LINE.match(lines["Inspector:"])
    assert match, lines
    page = requests.get(match.group(1), timeout=10)
    assert page.status_code == 200
    assert "live inspector" in page.text
    state = requests.get(match.group(1) + "_inspector/api/state", timeout=10)
    assert state.json()["requests"] == []
    requests.post(
        match.group(1) + "v4/feedback",
        json={"type": "rating", "value": 1},
        headers={"X-API-KEY": "k"},
        timeout=10,
    )
    line = REQUEST_LINE.match(serve.line())
    assert line, "the first line is the feedback POST"
    assert line.group("rest") == "200, 1 item"
    returncode, stderr = serve.stop(signal.SIGINT)
    assert (returncode, stderr) == (0, "")
    assert serve.line() == "Received 1 request: 1 answered 200 (1 item accepted)."


@posix_only
@pytest.mark.slow
def test_serve_no_inspector_leaves_every_path_to_the_service() -> None:
    """--no-inspector: no Inspector line, and / is the service's 404, printed as a request."""
    child = Serve("--port", "0", "--api-key", "k", "--no-inspector")
    try:
        lines = banner(child)
        assert "Inspector:" not in lines
        match = URL_LINE.match(lines["Humanloop"])
        assert match
        root = match.group(1)[: -len("v4")]
        answer = requests.get(root, timeout=10)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
        line = re.match(r"^\d\d:\d\d:\d\d GET / 404", child.line())
        assert line, "the GET is a request of the service's"
        returncode, stderr = child.stop(signal.SIGTERM)
        assert (returncode, stderr) == (0, "")
    finally:
        child.kill()


@posix_only
@pytest.mark.slow
def test_serve_warns_that_the_inspector_is_exposed_off_loopback() -> None:
    """Bound to every address, serve says on stderr, in one line, that the page shows the
    feedback it receives to whoever can reach it."""
    child = Serve("--host", "0.0.0.0", "--port", "0", "--api-key", "k")
    try:
        lines = banner(child)
        assert lines["Inspector:"].startswith("Inspector: http://0.0.0.0:")
        returncode, stderr = child.stop(signal.SIGTERM)
    finally:
        child.kill()
    assert returncode == 0
    (warning,) = stderr.splitlines()
    assert warning.startswith("humanloop-logging serve: warning: the inspector shows the feedback")
    assert "0.0.0.0:" in warning


@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_promptly_with_an_inspector_page_connected(serve: Serve, signum: int) -> None:
    """An open event stream (a page left open) does not hold up Ctrl-C or SIGTERM."""
    match = INSPECTOR_LINE.match(banner(serve)["Inspector:"])
    assert match
    page = http.client.HTTPConnection("127.0.0.1", int(match.group(2)), timeout=10)
    try:
        page.request("GET", "/_inspector/api/events")
        stream = page.getresponse()
        assert stream.readline() == b"retry: 2000\n"
        returncode, stderr = serve.stop(signum, timeout=10)
        assert (returncode, stderr) == (0, "")
        assert b"event: snapshot\n" in stream.read(), "the stream ends, the snapshot read"
    finally:
        page.close()
