"""A Hub that hangs, answers garbage or sits behind a proxy: one line in seconds, never a hang.

Each command runs in a subprocess (as a user runs it) against a loopback server started here,
with ``SAE_KIT_HUB_TIMEOUT=1`` so a server that never answers costs about a second per request.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub
from tests.helpers import HUB_TOKEN, cli_train, hub_cli

pytestmark = pytest.mark.slow  # every test starts the CLI in a subprocess
FAST_TIMEOUT = {"SAE_KIT_HUB_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def trained_run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hubfaults") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        result = cli_train(tiny_gpt2, out, "--layer", "0")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Download progress may come first; then one error line, and no library log noise.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    assert all(line.startswith(("error: ", "Fetching ")) for line in lines), result.stderr
    assert HUB_TOKEN not in result.stderr + result.stdout
    return lines[-1]


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.parametrize("command", ["push", "pull"])
def test_a_hub_that_never_answers_is_one_line_in_seconds(command, run_dir, tmp_path):
    args = ["push", str(run_dir), "alice/saes"] if command == "push" else ["pull", "alice/saes"]
    with SilentServer() as server:
        started = time.monotonic()
        result = hub_cli(args, tmp_path / "home", server.url, env=FAST_TIMEOUT)
        took = time.monotonic() - started
    line = one_error_line(result)
    assert server.url in line and "answer" in line, line
    assert took < 60, took  # a bound, not a benchmark: before the fix it never returned


@pytest.mark.parametrize("route", ["create_repo", "commit", "tree", "resolve"])
def test_a_hub_that_stalls_mid_way_is_one_line(route, run_dir, tmp_path):
    with FakeHub(HUB_TOKEN) as hub:
        hub.seed("alice/saes", {p.relative_to(run_dir).as_posix(): p.read_bytes()
                                for p in run_dir.rglob("*") if p.is_file()})
        hub.stall.add(route)
        if route in ("create_repo", "commit"):
            args = ["push", str(run_dir), "alice/saes"]
        else:
            args = ["pull", "alice/saes" + ("/blocks.0.hook_resid_pre" if route == "tree" else "")]
        result = hub_cli(args, tmp_path / "home", hub.url, env=FAST_TIMEOUT)
    line = one_error_line(result)
    assert "did not answer within 1 s" in line, line


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("ref", ["alice/saes", "alice/saes/blocks.0.hook_resid_pre"])
def test_a_hub_answering_an_error_is_named_not_taken_for_no_network(status, ref, run_dir,
                                                                    tmp_path):
    # issue 21: huggingface_hub falls back to the cache and the pull said "no network"
    with FakeHub(HUB_TOKEN) as hub:
        hub.seed("alice/saes", {p.relative_to(run_dir).as_posix(): p.read_bytes()
                                for p in run_dir.rglob("*") if p.is_file()})
        hub.status["*"] = status
        result = hub_cli(["pull", ref], tmp_path / "home", hub.url, env=FAST_TIMEOUT)
    line = one_error_line(result)
    assert f"HTTP {status}" in line and "no network" not in line, line


def test_a_hub_that_stalls_on_the_repo_lookup_of_a_pull_says_so(run_dir, tmp_path):
    with FakeHub(HUB_TOKEN) as hub:
        hub.seed("alice/saes", {p.relative_to(run_dir).as_posix(): p.read_bytes()
                                for p in run_dir.rglob("*") if p.is_file()})
        hub.stall.add("repo_info")
        result = hub_cli(["pull", "alice/saes"], tmp_path / "home", hub.url, env=FAST_TIMEOUT)
    line = one_error_line(result)
    assert "did not answer within 1 s" in line and "no network" not in line, line


@pytest.mark.parametrize("args", [["pull", "alice/saes"],
                                  ["pull", "alice/saes/blocks.0.hook_resid_pre"],
                                  ["push", "RUN", "alice/saes"]])
def test_a_hub_answering_garbage_is_one_line(args, run_dir, tmp_path):
    args = [str(run_dir) if a == "RUN" else a for a in args]
    with FakeHub(HUB_TOKEN) as hub:
        hub.garbage.add("*")
        result = hub_cli(args, tmp_path / "home", hub.url, env=FAST_TIMEOUT)
    one_error_line(result)


def test_a_slow_hub_within_the_timeout_still_works(run_dir, tmp_path):
    with FakeHub(HUB_TOKEN) as hub:
        hub.delay = 0.3
        result = hub_cli(["push", str(run_dir), "alice/saes"], tmp_path / "home", hub.url,
                         env={"SAE_KIT_HUB_TIMEOUT": "5"})
        assert result.returncode == 0, result.stderr
        pulled = hub_cli(["pull", "alice/saes", "--out", str(tmp_path / "back")],
                         tmp_path / "home", hub.url, env={"SAE_KIT_HUB_TIMEOUT": "5"})
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "back" / "blocks.0.hook_resid_pre" / "sae.safetensors").is_file()


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy for plain HTTP: relays absolute-URL requests to the FakeHub it names."""

    target = ""
    seen: list[str] = []

    def _relay(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        self.seen.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target = urlsplit(self.target)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        path = urlsplit(self.path)._replace(scheme="", netloc="").geturl() or "/"
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = _relay  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_the_reachability_check_goes_through_https_proxy(run_dir, tmp_path):
    # The endpoint's name resolves nowhere: only the proxy can reach it, as behind a firewall.
    with FakeHub(HUB_TOKEN) as hub:
        handler = type("Proxy", (_Proxy,), {"target": hub.url, "seen": []})
        hub.url = "http://hub.invalid"  # the URLs it answers with name the endpoint
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        try:
            result = hub_cli(["push", str(run_dir), "alice/saes"], tmp_path / "home",
                             "http://hub.invalid", env={**FAST_TIMEOUT, "HTTP_PROXY": proxy_url,
                                                        "HTTPS_PROXY": proxy_url,
                                                        "NO_PROXY": ""})
        finally:
            proxy.shutdown()
            proxy.server_close()
        assert result.returncode == 0, result.stderr
        assert "alice/saes" in hub.repos
        assert any(p.startswith("http://hub.invalid/") for p in handler.seen)


def test_offline_and_unreachable_are_told_apart(tmp_path: Path):
    with SilentServer() as server:
        result = hub_cli(["pull", "alice/saes"], tmp_path / "home", server.url,
                         env={**FAST_TIMEOUT, "HF_HUB_OFFLINE": "1"})
    assert "HF_HUB_OFFLINE is set" in one_error_line(result)
