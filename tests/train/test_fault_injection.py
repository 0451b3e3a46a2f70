"""Fault injection, part 2 (issue 14): bad inputs are one `error:` line, faults lose nothing.

Each test names the numbered case of issue 14 it covers. The kills and signals of part 1 are in
test_faults.py, test_resume.py and test_checkpoint.py; a misbehaving Hub is in
test_hub_faults.py. docs/reliability.md lists every case with its test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store import sae_dir
from sae_kit.train import checkpoint
from tests.helpers import SAE_AT_1, SAVE_EVERY_STEP, cli_train, one_line_error

runner = CliRunner()


def _train(model_dir, out, *extra):
    return cli_train(model_dir, out, *extra, base=SAVE_EVERY_STEP)


@pytest.fixture(scope="module")
def trained(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fi") / "run"
    assert _train(tiny_gpt2, out, "--save-every", "2").exit_code == 0  # checkpoints 2 and 3
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


# --- 4: a torn metrics row ------------------------------------------------------------------

@pytest.mark.integration
def test_4_a_metrics_log_cut_mid_row_is_repaired_on_resume(run):
    shutil.rmtree(run / "checkpoints" / "step-000003")  # resume from step 2
    metrics = run / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    os.truncate(metrics, len(rows[0]) + 1 + len(rows[1]) // 2)  # the tail of the file is lost
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "ended in a half-written row" in " ".join(result.stderr.split())
    after = [json.loads(line) for line in metrics.read_text().splitlines()]  # all readable
    assert [row["step"] for row in after] == [1, 3]


# --- 5: one line for every bad input --------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("name", "content", "needle"), [
    ("bad.jsonl", b'{"text": "a"}\n{"text": "cut off\n', "could not read dataset"),
    ("bad.txt", b"caf\xe9 \xff\xfe not utf-8\n" * 50, "UnicodeDecodeError"),
    ("list.jsonl", b"[1, 2]\n", "not text"),
])
def test_5_a_malformed_dataset_is_one_line(tiny_gpt2, tmp_path, name, content, needle):
    data = tmp_path / name
    data.write_bytes(content)
    result = _train(tiny_gpt2, tmp_path / "r", "--dataset", str(data))
    one_line_error(result, needle)


def _model_copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


@pytest.mark.integration
def test_5_a_model_directory_without_config_is_one_line(tiny_gpt2, tmp_path):
    model = _model_copy(tiny_gpt2, tmp_path / "m")
    (model / "config.json").unlink()
    result = _train(model, tmp_path / "r")
    one_line_error(result, "is not a model directory (no config.json)")


@pytest.mark.integration
def test_5_a_model_with_only_pickled_weights_is_refused_in_one_line(tiny_gpt2, tmp_path):
    model = _model_copy(tiny_gpt2, tmp_path / "m")
    weights = model / "model.safetensors"
    torch.save(load_file(str(weights)), model / "pytorch_model.bin")
    weights.unlink()
    result = _train(model, tmp_path / "r")
    one_line_error(result, "only as a pickle file", "unpickling can run code")


@pytest.mark.integration
@pytest.mark.parametrize(("device", "needle"), [("meta", "--device meta holds no data"),
                                                ("mps", "'mps' is not available"),
                                                ("cuda:7", "cuda")])
def test_5_an_absent_device_is_one_line(tiny_gpt2, tmp_path, device, needle):
    args = [a for a in SAVE_EVERY_STEP if a not in ("--device", "cpu")]
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out",
                                 str(tmp_path / "r"), *args, "--device", device])
    one_line_error(result, needle)


def _sae_config(run: Path) -> Path:
    return run / SAE_AT_1 / "config.json"


@pytest.mark.integration
@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: [c], "but a JSON list"),
    (lambda c: {**c, "n_dict": 10**12}, "tensor shapes differ"),
    (lambda c: {**c, "n_dict": 2**31 - 1}, "tensor shapes differ"),
    (lambda c: {**c, "n_dict": "64"}, "want a positive whole number"),
    (lambda c: {**c, "d_in": -1}, "want a positive whole number"),
    (lambda c: {**c, "options": {"bogus": 1}}, "unknown option 'bogus'"),
])
def test_5_a_hostile_sae_config_is_one_line_before_any_allocation(run, edit, needle):
    path = _sae_config(run)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    result = runner.invoke(app, ["export", str(run / SAE_AT_1), str(run.parent / "x")])
    one_line_error(result, needle)


@pytest.mark.integration
def test_5_eval_of_a_read_only_run_is_one_line_before_evaluating(run, monkeypatch):
    # The tests run as root, who may write anywhere: the run is read-only as os.access says.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if mode & os.W_OK and str(p).startswith(str(run)) else real(p, mode, **kw)))
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu"])
    one_line_error(result, f"cannot write {str(run / 'eval.json')!r}", "copy the run")
    assert not (run / "eval.json").exists()


@pytest.mark.integration
def test_5_a_failed_eval_write_is_one_line(run, monkeypatch):
    from sae_kit.eval import evaluation

    def fail(path, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(evaluation, "write_json_atomic", fail)
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu"])
    one_line_error(result, "Read-only file system")


@pytest.mark.integration
def test_5_a_plot_into_a_missing_directory_is_one_line_before_evaluating(run, tmp_path):
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu",
                                 "--plot", str(tmp_path / "no" / "such" / "p.png")])
    one_line_error(result, "is not a directory; create it first")
    assert not (run / "eval.json").exists()


# --- 7: export never writes into a non-empty directory ---------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("what", ["run", "sae"])
def test_7_export_refuses_a_non_empty_directory(run, tmp_path, what):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    source = run if what == "run" else run / SAE_AT_1
    result = runner.invoke(app, ["export", str(source), str(out)])
    one_line_error(result, "already exists and is not empty")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# --- 8: temporary files and the umask ---------------------------------------------------------

@pytest.mark.integration
def test_8_an_interrupted_sae_write_leaves_no_temporary_file(run, monkeypatch):
    sae, config = sae_dir.load_sae_dir(run / SAE_AT_1)
    from sae_kit.model.hookpoints import HookPoint

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a signal arriving mid-write

    monkeypatch.setattr("safetensors.torch.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        sae_dir.save_sae(sae, HookPoint.parse(SAE_AT_1), run / SAE_AT_1, {})
    assert not list((run / SAE_AT_1).glob(".*"))


@pytest.mark.integration
def test_8_temporary_files_of_a_killed_write_are_swept_by_the_next(run):
    stale = run / SAE_AT_1 / ".sae.safetensors.abc123"
    stale.write_bytes(b"half")  # what kill -9 during the final write leaves
    sae, _ = sae_dir.load_sae_dir(run / SAE_AT_1)
    from sae_kit.model.hookpoints import HookPoint

    sae_dir.save_sae(sae, HookPoint.parse(SAE_AT_1), run / SAE_AT_1, {})
    assert not stale.exists()


@pytest.mark.integration
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_8_run_files_follow_the_umask(tiny_gpt2, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "r"
        assert _train(tiny_gpt2, out).exit_code == 0
    finally:
        os.umask(old)
    paths = [p for p in out.rglob("*")]
    assert paths
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == want, (path, oct(mode), oct(want))


# --- 10: messages that say what is really wrong -----------------------------------------------

@pytest.mark.integration
def test_10_offline_model_load_says_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["train", "--model", "alice/not-cached", *SAVE_EVERY_STEP])
    message = one_line_error(result, "HF_HUB_OFFLINE is set")
    assert "wrong id" not in message


@pytest.mark.integration
def test_10_a_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a Hub lookup would say "no network"
    result = runner.invoke(app, ["train", "--model", "runs/typo", *SAVE_EVERY_STEP])
    one_line_error(result, "model directory 'runs/typo' does not exist")
    result = runner.invoke(app, ["eval", "runs/typo"])
    one_line_error(result, "no such directory: 'runs/typo'")


# --- 3: a resume trusts nothing it has not checked --------------------------------------------

def _state(ckpt: Path) -> dict:
    return json.loads((ckpt / "state.json").read_text())


def _put_state(ckpt: Path, state: dict, reseal: bool) -> None:
    if reseal:  # an edit that also recomputes the checksums, as a careful tamperer would
        state["sha256"]["tensors.safetensors"] = checkpoint._sha256(ckpt / "tensors.safetensors")
        state["sha256"]["state.json"] = checkpoint._state_digest(state)
    (ckpt / "state.json").write_text(json.dumps(state))


def _edit_counter(name, value):
    def edit(ckpt, state):
        state["counters"][name] = value
    return edit


def _edit_scheduler(key, value):
    def edit(ckpt, state):
        state["tree"]["scheduler"][key] = value
    return edit


def _edit_python_rng(value):
    def edit(ckpt, state):
        state["tree"]["rng"]["python"][1][5] = value
    return edit


def _rename_tensor(ckpt, state):
    path = ckpt / "tensors.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("saes/"))
    tensors[key.replace("saes/", "saes/x")] = tensors.pop(key)
    save_file(tensors, str(path), metadata={"format": checkpoint.FORMAT})


TAMPER = {  # name: (edit, whether the tamperer recomputed the checksums)
    "step": (_edit_counter("step", 2), False),
    "base learning rates": (_edit_scheduler("base_lrs", [1.0]), False),
    "python RNG state": (_edit_python_rng(12345), False),
    "step, resealed": (_edit_counter("step", 2), True),
    "base learning rates, resealed": (_edit_scheduler("base_lrs", [1.0]), True),
    "negative windows, resealed": (_edit_counter("windows", -4), True),
    "float windows, resealed": (_edit_counter("windows", 12.0), True),
    "float in RNG state, resealed": (_edit_python_rng(0.5), True),
    "renamed tensor, resealed": (_rename_tensor, True),
}


@pytest.mark.parametrize("case", list(TAMPER))
@pytest.mark.slow
def test_3_a_tampered_checkpoint_is_refused_and_the_previous_one_used(run, case):
    edit, reseal = TAMPER[case]
    newest = run / "checkpoints" / "step-000003"
    finished = load_file(str(run / SAE_AT_1 / "sae.safetensors"))
    state = _state(newest)
    edit(newest, state)
    _put_state(newest, state, reseal)
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    warning = " ".join(result.stderr.split())
    assert f"warning: checkpoint {str(newest)!r}" in warning
    assert "renamed it to step-000003.corrupt and resumed from step-000002" in warning
    redone = load_file(str(run / SAE_AT_1 / "sae.safetensors"))
    for name, value in finished.items():  # step 3 done again: the same weights as before
        torch.testing.assert_close(redone[name], value, rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]


@pytest.mark.integration
def test_3_when_every_checkpoint_is_tampered_it_is_one_line(run):
    for ckpt in checkpoint.list_checkpoints(run / "checkpoints"):
        state = _state(ckpt)
        state["counters"]["windows"] = -1
        _put_state(ckpt, state, reseal=True)
    result = runner.invoke(app, ["train", "--resume", str(run)])
    one_line_error(result, "every checkpoint in", "whole numbers >= 0")


# --- 1 and 2: one process per run directory ------------------------------------------------

@pytest.mark.integration
def test_1_runs_named_in_the_same_second_get_their_own_directories(tiny_gpt2, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20261202-120000")  # one second
    train = ["train", "--model", str(tiny_gpt2), *SAVE_EVERY_STEP]
    first = runner.invoke(app, [*train, "--seed", "1"])
    second = runner.invoke(app, [*train, "--seed", "2"])
    assert first.exit_code == second.exit_code == 0, (first.output, second.output)
    dirs = [Path(r.stdout.strip().splitlines()[-1]) for r in (first, second)]
    assert dirs[0] != dirs[1] and dirs[1].name == dirs[0].name + "-2"
    for run_dir, seed in zip(dirs, (1, 2), strict=True):
        assert json.loads((run_dir / "config.json").read_text())["seed"] == seed
        steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
        assert steps == [1, 2, 3]


@pytest.mark.integration
def test_2_a_second_process_on_a_run_being_trained_is_one_line(run):
    from filelock import FileLock

    holder = FileLock(run / ".lock", thread_local=False)
    holder.acquire(timeout=0)  # as another process training this run would
    try:
        before = (run / "metrics.jsonl").read_bytes()
        result = runner.invoke(app, ["train", "--resume", str(run)])
        one_line_error(result, "another sae-kit process is training", "wait for it to end")
        assert (run / "metrics.jsonl").read_bytes() == before  # nothing was touched
        fresh = runner.invoke(app, ["train", "--model", str(run.parent / "m"), "--out", str(run),
                                    *SAVE_EVERY_STEP])
        assert fresh.exit_code == 2
    finally:
        holder.release()
    result = runner.invoke(app, ["train", "--resume", str(run)])  # free again: it resumes
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_2_two_resumes_at_once_never_log_a_step_twice(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    shutil.rmtree(run / "checkpoints" / "step-000003")
    for ckpt in checkpoint.list_checkpoints(run / "checkpoints"):
        shutil.rmtree(ckpt) if ckpt.name != "step-000002" else None
    cmd = [sys.executable, "-m", "sae_kit", "train", "--resume", str(run)]
    env = {**os.environ, "SAE_KIT_PLUGINS": os.environ.get("SAE_KIT_PLUGINS", "")}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), outs
    for proc, (_, stderr) in zip(procs, outs, strict=True):
        assert "Traceback" not in stderr
        if proc.returncode == 2:
            assert "another sae-kit process is training" in stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
    assert steps == [1, 2, 3]


# --- 5 and 8: options checked where they are parsed -----------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("args", "needle"), [
    (["--dict-ratio", "inf"], "dict_ratio=inf"),
    (["--dict-ratio", "nan"], "dict_ratio=nan"),
    (["--dict-ratio", "1e7"], "lower --dict-ratio"),
    (["--seed", "-1"], "seed=-1"),
    (["--seed", str(2**64)], "seed="),
    (["--grad-clip", "nan"], "grad_clip=nan"),
    (["--lr", "inf"], "lr=inf"),
    (["--architecture", "topk", "--lambda", "2"], "--lambda has no effect with the 'topk'"),
])
def test_5_8_meaningless_options_are_one_line(tiny_gpt2, tmp_path, args, needle):
    result = _train(tiny_gpt2, tmp_path / "r", *args)
    one_line_error(result, needle)


@pytest.mark.integration
def test_8_topk_shows_no_lambda_in_its_sae_config_eval_header_and_card(tiny_gpt2, tmp_path):
    out = tmp_path / "r"
    assert _train(tiny_gpt2, out, "--architecture", "topk", "--arch-option", "k=4").exit_code == 0
    assert json.loads((out / SAE_AT_1 / "config.json").read_text())["sparsity_coeff"] is None
    result = runner.invoke(app, ["eval", str(out), "--n-tokens", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "λ" not in result.stdout.splitlines()[0]
    card = runner.invoke(app, ["push", str(out), "alice/x", "--dry-run"])
    assert card.exit_code == 0, card.output
    row = next(line for line in card.stdout.splitlines() if line.startswith(f"| `{SAE_AT_1}`"))
    assert "| — |" in row


@pytest.mark.integration
@pytest.mark.parametrize("where", ["under a file", "/proc"])
def test_5_an_unwritable_out_is_one_line(tiny_gpt2, tmp_path, where):
    if where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:
        out = Path("/proc/sae-kit-test/run")
    result = _train(tiny_gpt2, out)
    one_line_error(result, f"cannot write the run directory {str(out)!r}", "choose a writable")


@pytest.mark.integration
def test_5_a_run_config_that_is_a_list_is_one_line(run):
    (run / "config.json").write_text("[1, 2]")
    result = runner.invoke(app, ["train", "--resume", str(run)])
    one_line_error(result, "is not a training config")


# --- 9: progress in a log file --------------------------------------------------------------

@pytest.mark.slow
def test_9_without_a_terminal_progress_is_timestamped_lines(tiny_gpt2, tmp_path):
    log = tmp_path / "stderr.log"
    env = {**os.environ, "SAE_KIT_LOG_SECONDS": "0"}
    with log.open("w") as stderr:  # a file, as under nohup or SLURM
        done = subprocess.run([sys.executable, "-m", "sae_kit", "train", "--model",
                               str(tiny_gpt2), "--out", str(tmp_path / "r"), *SAVE_EVERY_STEP],
                              env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                              timeout=300)
    assert done.returncode == 0
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    lines = [line for line in log.read_text().splitlines() if re.match(stamp, line)]
    assert re.match(stamp + r"run directory: " + re.escape(str(tmp_path / "r")), lines[0])
    progress = [line for line in lines if re.match(stamp + r"training \d+/3", line)]
    assert len(progress) == 3 and "loss" in progress[-1]


@pytest.mark.slow
def test_5_when_a_torchrun_rank_dies_the_others_say_so_in_one_line(tiny_gpt2, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "SAE_KIT_LOG_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sae_kit", "train", "--model", str(tiny_gpt2), "--out",
           str(tmp_path / "run"), *SAVE_EVERY_STEP, "--n-samples", "4000", "--save-every", "1000"]
    logs = [tmp_path / f"rank{r}.log" for r in (0, 1)]
    procs = [subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.DEVNULL, stderr=logs[r].open("w"))
             for r in (0, 1)]
    try:
        deadline = time.monotonic() + 180
        while "training 2/" not in logs[0].read_text():  # both ranks are training
            assert procs[0].poll() is None and time.monotonic() < deadline, logs[0].read_text()
            time.sleep(0.2)
        procs[1].kill()  # rank 1 dies (OOM killer, node failure, ...)
        procs[0].wait(timeout=120)
    finally:
        for proc in procs:
            proc.kill()
    lines = [line for line in logs[0].read_text().splitlines()  # less progress and warnings
             if not re.match(r"\d{4}-\d\d-\d\d |\[transformers\]", line)]
    assert procs[0].returncode == 2, lines
    assert "Traceback" not in logs[0].read_text()
    assert len(lines) == 1 and lines[0].startswith("error: rank 0: another process"), lines
