"""Experiment trackers: every metrics row reaches wandb (offline) and TensorBoard, read back."""

import json
import sys

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.trackers.base import require

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
FAST = ["--dataset", "pydoc", "--n-samples", "6", "--batch-size", "2", "--grad-accum", "1",
        "--context", "16", "--dict-ratio", "4", "--log-every", "1", "--device", "cpu",
        "--layer", "1", "--loss", "local"]


@pytest.fixture(autouse=True)
def fresh_wandb():
    """W&B's process-wide state from another test's run must not decide this test's mode."""
    wandb = sys.modules.get("wandb")  # only where some earlier test imported it
    if wandb is not None:
        wandb.teardown()


def _train(model_dir, out, *extra):
    result = runner.invoke(app, ["train", "--model", str(model_dir), "--out", str(out),
                                 *FAST, *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_every_row(tiny_gpt2, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = _train(tiny_gpt2, tmp_path / "run", "--tracker", "tensorboard")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    losses = events.Scalars("loss")
    assert [e.step for e in losses] == [r["step"] for r in rows] == [1, 2, 3]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows])
    assert "l0/blocks.1.hook_resid_pre" in events.Tags()["scalars"]


def test_tensorboard_gets_the_settings_as_hparams_and_text(tiny_gpt2, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _train(tiny_gpt2, tmp_path / "run", "--tracker", "tensorboard", "--lambda", "3")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
              for k, v in start.hparams.items()}
    assert values["sparsity_coeff"] == pytest.approx(3.0)
    assert values["loss"] == config["loss"] == "local"
    assert values["seed"] == config["seed"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["loss"]
    (text,) = events.Tensors("config/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    settings = {k: v for k, v in config.items() if k != "resolved"}  # the record's settings
    assert json.loads(shown.strip("`\n")) == settings


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode, silent, its config and cache under the test's directory."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def test_wandb_offline_run_records_every_row(tiny_gpt2, tmp_path, wandb_offline):
    rows = _train(tiny_gpt2, tmp_path / "run", "--tracker", "wandb")
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    from wandb.proto import wandb_internal_pb2

    history = []
    for data in _leveldb_log_records(run_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in record.history.item})
    assert [h["_step"] for h in history] == [r["step"] for r in rows]
    assert [h["loss"] for h in history] == pytest.approx([r["loss"] for r in rows])


def test_wandb_runs_are_grouped_and_named_by_their_directory(tiny_gpt2, tmp_path,
                                                             wandb_offline):
    from wandb.proto import wandb_internal_pb2

    seen = []
    for sweep in ("sweep-a", "sweep-b"):  # same point name in two sweeps' directories
        run_dir = tmp_path / sweep / "point-1"
        _train(tiny_gpt2, run_dir, "--tracker", "wandb")
        (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
        for data in _leveldb_log_records(run_file.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            if record.WhichOneof("record_type") == "run":
                seen.append((record.run.run_group, record.run.display_name))
                break
    assert seen == [("sweep-a", "sweep-a/point-1"), ("sweep-b", "sweep-b/point-1")]


def _leveldb_log_records(raw: bytes):
    """The records of a .wandb file: a 7-byte file header, then LevelDB's log format (32 KiB
    blocks of records, each a 7-byte header: crc32, little-endian length, type)."""
    assert raw[:4] == b":W&B"
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(raw):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length = int.from_bytes(raw[position + 4:position + 6], "little")
        kind = raw[position + 6]
        data = raw[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 0:
            continue
        pending = data if kind in (1, 2) else pending + data  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL or LAST ends it
            yield pending
            pending = b""


def test_a_missing_tracker_package_or_name_is_one_line(tiny_gpt2, tmp_path):
    with pytest.raises(SaeKitError, match="needs the no_such_pkg package: pip install no_such"):
        require("no_such_pkg", "demo")
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out",
                                 str(tmp_path / "run"), *FAST, "--tracker", "nope"])
    assert result.exit_code == 2
    assert "no tracker plugin named 'nope'; installed: tensorboard, wandb" in result.output
