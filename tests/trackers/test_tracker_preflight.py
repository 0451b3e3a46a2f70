"""Trackers are checked before the model loads, and W&B without a key or a server is one line
(issue 21: a 155-line traceback after the model had loaded; with a key and no network, a wait
with no bound). The model named does not exist: a check after loading would name it instead."""

import socket
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from tests.helpers import FAST, one_line_error

runner = CliRunner()
NO_KEY = "the wandb tracker found no W&B API key; set WANDB_API_KEY, run `wandb login`"


@pytest.fixture
def no_wandb_key(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # not there: no `wandb login` key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def _train(tmp_path, *extra):
    return runner.invoke(app, ["train", "--model", str(tmp_path / "no-model"), "--out",
                               str(tmp_path / "run"), *FAST, *extra])


@pytest.mark.integration
@pytest.mark.usefixtures("no_wandb_key")
def test_wandb_without_a_key_is_one_line_before_the_model_loads(tmp_path):
    pytest.importorskip("wandb")
    one_line_error(_train(tmp_path, "--tracker", "wandb"), NO_KEY, "WANDB_MODE=offline")
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
@pytest.mark.usefixtures("no_wandb_key")
@pytest.mark.parametrize("how", ["a settings file", "a --lambda group", "a sweep point"])
def test_wandb_without_a_key_is_the_same_line_on_every_path(tmp_path, how):
    pytest.importorskip("wandb")
    if how == "a settings file":
        path = tmp_path / "run.toml"
        path.write_text(f'model = "{tmp_path / "no-model"}"\ndataset = "pydoc"\n'
                        'trackers = ["wandb"]\n')
        result = runner.invoke(app, ["train", "--config", str(path)])
    elif how == "a --lambda group":
        result = _train(tmp_path, "--tracker", "wandb", "--lambda", "0.5,1")
    else:
        path = tmp_path / "sweep.toml"
        path.write_text(f'out = "{tmp_path / "runs"}"\n[base]\nmodel = "{tmp_path / "m"}"\n'
                        'dataset = "pydoc"\n[[runs]]\nname = "a"\n[[runs]]\nname = "b"\n'
                        'trackers = ["wandb"]\n')
        result = runner.invoke(app, ["sweep", str(path)])
    one_line_error(result, NO_KEY)


@pytest.mark.integration
def test_an_unknown_tracker_or_a_missing_package_is_one_line_before_the_model_loads(
        tmp_path, monkeypatch):
    one_line_error(_train(tmp_path, "--tracker", "nope"), "no tracker plugin named 'nope'")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    one_line_error(_train(tmp_path, "--tracker", "tensorboard"),
                   "the tensorboard tracker needs the tensorboard package")


@pytest.mark.usefixtures("no_wandb_key")
def test_a_key_in_netrc_or_offline_mode_passes_the_check(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from sae_kit.trackers.wandb_tracker import WandbTracker

    with pytest.raises(SaeKitError, match="no W&B API key"):
        WandbTracker.check()
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password " + "k" * 40)
    WandbTracker.check()
    monkeypatch.setenv("NETRC", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    WandbTracker.check()


@pytest.mark.slow
@pytest.mark.usefixtures("no_wandb_key")
def test_a_wandb_server_that_never_answers_is_one_line_within_the_timeout(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("wandb")
    from sae_kit.trackers.wandb_tracker import WandbTracker

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []  # accepted, never answered
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)],
                     daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    started = time.monotonic()
    with pytest.raises(SaeKitError, match="could not start a W&B run within 3 s") as caught:
        WandbTracker(tmp_path, {})
    assert time.monotonic() - started < 120  # W&B's own service start is most of it
    assert "\n" not in str(caught.value)


def test_a_bad_wandb_init_timeout_is_one_line(monkeypatch):
    from sae_kit.trackers.wandb_tracker import _init_timeout

    for text in ("x", "0", "-1", "inf"):
        monkeypatch.setenv("WANDB_INIT_TIMEOUT", text)
        with pytest.raises(SaeKitError, match="must be a number of seconds > 0"):
            _init_timeout()
