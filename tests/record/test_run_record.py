"""A run's record: config.json read once, by RunDir.read, into typed read-only attributes."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

import sae_kit
from sae_kit.data import DataSpec
from sae_kit.errors import SaeKitError
from sae_kit.record import Resolved, RunRecord, TrainConfig
from sae_kit.store.run_dir import RunDir

RESOLVED = Resolved(context=64, n_samples=32, total_steps=2, warmup_steps=1, d_model=16,
                    n_dict=960, n_layers=3, model_type="gpt2", adapter="gpt2 (sae_kit_gpt2)",
                    device="cpu", world_size=1)


def _write(run: Path, data) -> RunDir:
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps(data))
    return RunDir(run)


def test_a_record_round_trips_through_config_json(tmp_path):
    record = RunRecord(TrainConfig(loss="local", seed=7, split="train[:90%]",
                                   eval_split="train[90%:]"), RESOLVED)
    read = _write(tmp_path, record.to_json()).read()
    assert read == record
    assert read.resolved.context == 64 and read.config.seed == 7
    assert "resolved" in json.loads((tmp_path / "config.json").read_text())


def test_the_record_is_read_only():
    record = RunRecord(TrainConfig(), RESOLVED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.resolved.context = 128  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.config = TrainConfig()  # type: ignore[misc]


def test_the_data_spec_comes_from_the_settings():
    config = TrainConfig(dataset="./texts", split="train[:80%]", eval_split="test",
                         text_column="body")
    assert RunRecord(config, RESOLVED).data_spec == DataSpec("./texts", "train[:80%]", "test",
                                                             "body")


def test_a_record_without_world_size_was_trained_alone(tmp_path):
    data = RunRecord(TrainConfig(), RESOLVED).to_json()
    del data["resolved"]["world_size"]  # what runs before torchrun support wrote
    assert _write(tmp_path, data).read().resolved.world_size == 1


def test_unknown_keys_are_ignored(tmp_path):
    data = RunRecord(TrainConfig(), RESOLVED).to_json()
    data["resolved"]["something_new"] = 3
    data["an_option_of_a_newer_release"] = 1
    assert _write(tmp_path, data).read() == RunRecord(TrainConfig(), RESOLVED)


@pytest.mark.parametrize("edit, says", [
    (lambda d: [1, 2], "is not a training config (a JSON list"),
    (lambda d: {k: v for k, v in d.items() if k != "resolved"}, "lacks ['resolved']"),
    (lambda d: {**d, "resolved": {"context": 64}}, "lacks ['resolved.n_samples'"),
    (lambda d: {**d, "resolved": [1]}, "malformed resolved block"),
    (lambda d: {**d, "resolved": {**d["resolved"], "context": "64"}},
     "resolved.context = '64'"),
    (lambda d: {k: v for k, v in d.items() if k != "model"}, "lacks ['model']"),
])
def test_a_broken_config_json_is_one_line(tmp_path, edit, says):
    run = _write(tmp_path, edit(RunRecord(TrainConfig(), RESOLVED).to_json()))
    with pytest.raises(SaeKitError) as caught:
        run.read()
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_directory_without_config_json_is_no_run(tmp_path):
    with pytest.raises(SaeKitError, match="is not a sae-kit run directory"):
        RunDir(tmp_path).read()


def test_no_module_reads_a_run_config_json_but_run_dir():
    # The one reader: everything else asks RunDir.read for attributes.
    root = Path(sae_kit.__file__).parent
    raw = re.compile(r"read_json\([^)]*\.config\b|json\.load[s]?\([^)]*config\.json")
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "run_dir.py" and raw.search(p.read_text())]
    assert not found, found


def test_a_fine_tunes_start_is_typed_and_absent_for_a_fresh_run(tmp_path):
    from sae_kit.record.run_record import StartRecord

    fresh = RunRecord(TrainConfig(), RESOLVED).to_json()
    assert "init_from" not in fresh["resolved"]  # config.json of a fresh run is as before
    start = StartRecord("bob/saes/h.1", "sparsify", "/cache/h.1",
                        {"blocks.1.hook_resid_post": "ab" * 32})
    record = RunRecord(TrainConfig(init_from="bob/saes/h.1"),
                       dataclasses.replace(RESOLVED, init_from=start))
    read = _write(tmp_path / "ft", record.to_json()).read()
    assert read == record and read.resolved.init_from.sha256 == start.sha256
    broken = record.to_json()
    broken["resolved"]["init_from"] = {"source": "x", "format": "saelens"}  # no path, sha256
    with pytest.raises(SaeKitError, match=r"has resolved\.init_from = .*written by `sae-kit "
                                          r"train`"):
        _write(tmp_path / "bad", broken).read()
