"""`sae-kit push` / `pull` against a local stand-in for the Hub, with the real huggingface_hub.

The CLI runs in a subprocess with ``HF_ENDPOINT`` pointing at tests/fake_hub.py, exactly as a
user would run it, so huggingface_hub reads its settings at import time as it does in real use.
Checks that need no network run in-process.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store.sae_dir import load_sae_dir
from tests.fake_hub import FakeHub
from tests.helpers import FAST, FIRST_PARTY, HUB_TOKEN, hub_cli

pytestmark = pytest.mark.slow  # a fake Hub server and real push/pull round trips

HOOKS = ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"]
# sae-kit's own files (exact), then SAELens' (what SAE.from_pretrained(repo, hook) fetches)
SAE_FILES = ("sae.safetensors", "config.json", "cfg.json", "sae_weights.safetensors")
EVAL = {"saes": {HOOKS[0]: {"l0": 12.5, "kl": 0.0123}, HOOKS[1]: {"l0": 7, "kl": 0.0456}},
        "n_tokens": 4096, "run_dir": "/somewhere/local"}
runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `sae-kit train` run with two SAEs (layers 0 and 2)."""
    out = tmp_path_factory.mktemp("hub") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAE_KIT_PLUGINS", FIRST_PARTY)
        mp.setenv("HF_HUB_OFFLINE", "1")
        result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out", str(out),
                                     *FAST, "--layer", "0", "--layer", "2"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_dir(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run, with the eval.json that `sae-kit eval` would write."""
    copy = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (copy / "eval.json").write_text(json.dumps(EVAL))
    return copy


@pytest.fixture
def hub():
    with FakeHub(HUB_TOKEN, lifetime=120) as server:
        yield server


def sample_input() -> torch.Tensor:
    return torch.randn(5, 32, generator=torch.Generator().manual_seed(0))


def assert_no_token_anywhere(hub: FakeHub, outputs: list[str], *dirs: Path) -> None:
    needle = HUB_TOKEN.encode()
    assert all(needle not in r.body for r in hub.requests)
    for repo in hub.repos.values():
        assert all(needle not in data for files in repo.commits.values() for data in files.values())
    assert all(HUB_TOKEN not in text for text in outputs)
    for root in dirs:
        for path in root.rglob("*"):
            assert not path.is_file() or needle not in path.read_bytes(), path


def card_metadata(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


PY_API = """
import json, sys, torch, sae_kit
from sae_kit.store.sources import resolve_sae_source
run = resolve_sae_source("alice/saes")  # the whole repo: a run directory again
x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
outs = {h: sae_kit.load_sae("alice/saes", h)[0](x).output.tolist() for h in sys.argv[1:]}
print(json.dumps({"run": str(run), "outs": outs}))
"""


def test_push_then_pull_round_trips_through_the_hub_api(run_dir, hub, tmp_path):
    home = tmp_path / "hf-home"
    push = hub_cli(["push", str(run_dir), "alice/saes"], home, hub.url)
    assert push.returncode == 0, push.stderr
    assert push.stdout.strip().startswith(f"{hub.url}/alice/saes/commit/")
    assert [r.route for r in hub.writes].count("commit") == 1  # everything in one commit
    assert all(r.authorization == f"Bearer {HUB_TOKEN}" for r in hub.writes)

    files = hub.head_files("alice/saes")
    expected = {"config.json", "eval.json", "README.md", ".gitattributes"}
    expected |= {f"{h}/{name}" for h in HOOKS for name in SAE_FILES}
    assert set(files) == expected
    for h in HOOKS:
        assert files[f"{h}/sae.safetensors"] == (run_dir / h / "sae.safetensors").read_bytes()
        config = json.loads(files[f"{h}/config.json"])
        assert config["hook_point"] == h and config["tokens_trained"] == 8 * 32
        assert {"model", "revision", "loss", "sparsity_coeff", "n_dict", "dataset"} <= set(config)
    card = files["README.md"].decode()
    meta = card_metadata(card)
    assert meta["library_name"] == "saelens" and meta["license"] == "other"  # a local model
    assert "base_model" not in meta
    assert {"sae-kit", "sparse-autoencoder", "e2e-sae"} <= set(meta["tags"])
    assert "| kl | 0.0123 | 0.0456 |" in card and "| l0 | 12.5 | 7 |" in card

    api = hub_cli(HOOKS, home, hub.url, python=PY_API)  # sae_kit.load_sae with a Hub id
    assert api.returncode == 0, api.stderr
    answer = json.loads(api.stdout)
    assert (Path(answer["run"]) / "README.md").read_bytes() == files["README.md"]
    x = sample_input()
    for h in HOOKS:
        original, _ = load_sae_dir(run_dir / h)
        assert torch.equal(torch.tensor(answer["outs"][h]), original(x).output)
    assert_no_token_anywhere(hub, [p.stdout + p.stderr for p in (push, api)], home, run_dir)


SAELENS = """
import json, sys, warnings, torch
from sae_lens import SAE
warnings.simplefilter("ignore")
x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
out = {}
for h in sys.argv[1:]:
    sae = SAE.from_pretrained("alice/saes", h)  # SAELens' own Hugging Face loader
    with torch.no_grad():
        out[h] = {"codes": sae.encode(x).tolist(), "output": sae.decode(sae.encode(x)).tolist(),
                  "hook": sae.cfg.metadata.hook_name}
print(json.dumps(out))
"""


def test_saelens_from_pretrained_loads_a_pushed_repo(run_dir, hub, tmp_path):
    pytest.importorskip("sae_lens", reason="sae-lens is not installed (pip install sae-lens)")
    home = tmp_path / "hf-home"
    push = hub_cli(["push", str(run_dir), "alice/saes"], home, hub.url)
    assert push.returncode == 0, push.stderr
    # huggingface_hub's 10 s default for a HEAD was too short for the local fake Hub on a
    # loaded 2-core machine (ConnectTimeout, five retries): a slow answer is not the point here.
    slow_ok = {"HF_HUB_ETAG_TIMEOUT": "120", "HF_HUB_DOWNLOAD_TIMEOUT": "120"}
    lens = hub_cli(HOOKS, home, hub.url, token=None, python=SAELENS, env=slow_ok)
    assert lens.returncode == 0, lens.stderr
    answer = json.loads(lens.stdout.strip().splitlines()[-1])
    x = sample_input()
    for h in HOOKS:
        ours, _ = load_sae_dir(run_dir / h)
        with torch.no_grad():
            out = ours(x)
        assert answer[h]["hook"] == h
        torch.testing.assert_close(torch.tensor(answer[h]["output"]), out.output,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.tensor(answer[h]["codes"]), out.codes,
                                   rtol=1e-5, atol=1e-5)
    card = hub.head_files("alice/saes")["README.md"].decode()
    assert f'sae = SAE.from_pretrained("alice/saes", "{HOOKS[0]}")' in card
    # ... and sae-kit still pulls the same repo, bit-exact
    pull = hub_cli(["pull", f"alice/saes/{HOOKS[1]}", "--out", str(tmp_path / "p")], home,
                   hub.url, token=None)
    assert pull.returncode == 0, pull.stderr
    pulled, _ = load_sae_dir(tmp_path / "p" / HOOKS[1])
    original, _ = load_sae_dir(run_dir / HOOKS[1])
    assert torch.equal(pulled(x).output, original(x).output)


@pytest.mark.parametrize(("model", "license_flag", "base", "license"), [
    ("gpt2", [], "openai-community/gpt2", "mit"),  # a legacy id: the Hub redirects it
    ("EleutherAI/pythia-70m", [], "EleutherAI/pythia-70m", "apache-2.0"),
    ("EleutherAI/pythia-70m", ["--license", "cc-by-4.0"], "EleutherAI/pythia-70m", "cc-by-4.0"),
    ("nobody/unknown-model", [], None, "other"),
])
def test_card_names_the_base_model_and_its_license_as_the_hub_knows_them(
        model, license_flag, base, license, run_dir, hub, tmp_path):
    hub.aliases["gpt2"] = "openai-community/gpt2"
    hub.models.update({"openai-community/gpt2": {"license": "mit"},
                       "EleutherAI/pythia-70m": {"license": "apache-2.0"}})
    for path in [run_dir / "config.json", *(run_dir / h / "config.json" for h in HOOKS)]:
        path.write_text(json.dumps({**json.loads(path.read_text()), "model": model}))
    push = hub_cli(["push", str(run_dir), "alice/saes", *license_flag], tmp_path / "h", hub.url)
    assert push.returncode == 0, push.stderr
    meta = card_metadata(hub.head_files("alice/saes")["README.md"].decode())
    assert meta.get("base_model") == base and meta["license"] == license
    assert f"license {license}, base_model {base or 'none'}" in push.stderr


def test_private_push_to_a_new_branch_then_pull_one_sae(run_dir, hub, tmp_path):
    home = tmp_path / "hf-home"
    push = hub_cli(["push", str(run_dir), "alice/private-saes", "--private", "--revision", "dev"],
                   home, hub.url)
    assert push.returncode == 0, push.stderr
    assert hub.repos["alice/private-saes"].private
    assert set(hub.head_files("alice/private-saes", "main")) == {".gitattributes"}
    assert f"{HOOKS[0]}/sae.safetensors" in hub.head_files("alice/private-saes", "dev")

    out = tmp_path / "pulled"
    pull = hub_cli(["pull", f"alice/private-saes/{HOOKS[1]}", "--revision", "dev", "--out",
                    str(out)], home, hub.url)
    assert pull.returncode == 0, pull.stderr
    assert pull.stdout.strip() == str((out / HOOKS[1]).resolve())
    assert not (out / HOOKS[0]).exists()  # only the SAE asked for
    original, _ = load_sae_dir(run_dir / HOOKS[1])
    pulled, _ = load_sae_dir(out / HOOKS[1])
    x = sample_input()
    assert torch.equal(pulled(x).output, original(x).output)

    # Pushing a run with fewer SAEs and no evaluation removes what no longer belongs.
    shutil.rmtree(run_dir / HOOKS[1])
    (run_dir / "eval.json").unlink()
    again = hub_cli(["push", str(run_dir), "alice/private-saes", "--revision", "dev"], home,
                    hub.url)
    assert again.returncode == 0, again.stderr
    assert set(hub.head_files("alice/private-saes", "dev")) == {
        ".gitattributes", "README.md", "config.json", *(f"{HOOKS[0]}/{n}" for n in SAE_FILES)}
    outputs = [p.stdout + p.stderr for p in (push, pull, again)]
    assert_no_token_anywhere(hub, outputs, home, out)


def test_a_repush_deletes_only_files_of_an_earlier_push_in_the_same_commit(run_dir, hub,
                                                                           tmp_path):
    hub.seed("alice/saes", {"README.md": b"old", "notes/blocks.1.txt": b"keep",
                            "blocks.3.hook_resid_post/config.json": b"{}",
                            "blocks.3.hook_resid_post/sae.safetensors": b"x",
                            "eval.json": b"{}"})
    (run_dir / "eval.json").unlink()  # this run was not evaluated: the old eval.json is stale
    push = hub_cli(["push", str(run_dir), "alice/saes"], tmp_path / "home", hub.url)
    assert push.returncode == 0, push.stderr
    assert [r.route for r in hub.writes].count("commit") == 1
    files = set(hub.head_files("alice/saes"))
    assert "notes/blocks.1.txt" in files and "eval.json" not in files
    assert not any(f.startswith("blocks.3.") for f in files)
    assert {f"{h}/sae.safetensors" for h in HOOKS} <= files


def test_dry_run_lists_files_and_card_without_network_or_token(trained_run, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    result = runner.invoke(app, ["push", str(trained_run), "alice/saes", "--dry-run"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[-1] for line in result.stdout.splitlines()[1:11]]
    assert listed == ["config.json", *(f"{h}/{n}" for h in HOOKS for n in SAE_FILES), "README.md"]
    card = result.stdout.split("--- README.md ---\n", 1)[1]
    assert card_metadata(card)["library_name"] == "saelens"
    assert "No evaluation was run" in card
    assert hub.requests == [] and HUB_TOKEN not in result.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unreachable", "no network: cannot reach http://127.0.0.1:"),
        ("no_sae", "holds no trained SAE"),
        ("weights_missing", "sae.safetensors' is missing: this directory holds no trained SAE"),
        ("repo_id_spaces", "bad repo id 'alice/my saes': expected namespace/name"),
        ("repo_id_no_namespace", "bad repo id 'saes': expected namespace/name"),
        ("repo_id_subfolder", "bad repo id 'alice/saes/x': expected namespace/name"),
        ("token_in_file", "refusing to push: config.json contains your Hugging Face token"),
    ],
)
def test_bad_push_is_one_line_and_uploads_nothing(case, message, run_dir, hub, tmp_path,
                                                  monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    repo, target = "alice/saes", run_dir
    if case == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    elif case == "no_sae":
        target = tmp_path / "empty-run"
        target.mkdir()
    elif case == "token_in_file":
        config = json.loads((run_dir / "config.json").read_text())
        (run_dir / "config.json").write_text(json.dumps({**config, "note": HUB_TOKEN}))
    elif case == "weights_missing":
        (run_dir / HOOKS[1] / "sae.safetensors").unlink()
    else:
        repo = {"repo_id_spaces": "alice/my saes", "repo_id_no_namespace": "saes",
                "repo_id_subfolder": "alice/saes/x"}[case]
    result = runner.invoke(app, ["push", str(target), repo])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in " ".join(result.stderr.split())
    assert hub.requests == [] and hub.repos == {}
    assert HUB_TOKEN not in result.output


def test_missing_token_is_one_line_and_uploads_nothing(run_dir, hub, tmp_path):
    result = hub_cli(["push", str(run_dir), "alice/saes"], tmp_path / "empty-home", hub.url,
                     token=None)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no Hugging Face token: set HF_TOKEN or run `hf auth login` (pushing needs a "
        "token with write access)")
    assert hub.requests == []


def test_failed_commit_leaves_nothing_uploaded(run_dir, hub, tmp_path):
    hub.fail_commits = True
    result = hub_cli(["push", str(run_dir), "alice/saes"], tmp_path / "hf-home", hub.url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the request for alice/saes (HTTP 500" in lines[0]
    assert set(hub.head_files("alice/saes")) == {".gitattributes"}  # the empty repo only
    assert HUB_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("alice/nothere", "repo 'alice/nothere' not found at http://127.0.0.1:"),
        ("alice/saes/blocks.9.hook_resid_pre", "alice/saes has no folder 'blocks.9.hook_resid_"),
        ("alice/saes --revision v2", "alice/saes has no revision 'v2' at http://127.0.0.1:"),
        ("unreachable", "no network: cannot reach http://127.0.0.1:"),
    ],
)
def test_bad_pull_is_one_line(target, message, hub, tmp_path):
    hub.seed("alice/saes", {"README.md": b"---\nlibrary_name: sae-kit\n---\n"})
    endpoint = hub.url
    if target == "unreachable":
        target, endpoint = "alice/saes", f"http://127.0.0.1:{_closed_port()}"
    result = hub_cli(["pull", *target.split()], tmp_path / "hf-home", endpoint)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not (tmp_path / "hf-home" / "hub" / "models--alice--saes" / "snapshots").exists()


def test_malformed_pull_id_is_one_line():
    result = runner.invoke(app, ["pull", "alice"])
    assert result.exit_code == 2
    assert "bad repo id 'alice': expected namespace/name, e.g. alice/gpt2-e2e-saes[/subfolder]" in (
        " ".join(result.stderr.split()))


def test_eval_accepts_a_hub_id(run_dir, hub, tmp_path):
    home = tmp_path / "hf-home"
    assert hub_cli(["push", str(run_dir), "alice/saes"], home, hub.url).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    env_run = hub_cli(["eval", "alice/saes", "--n-tokens", "64", "--json"], home, hub.url,
                      cwd=work)
    assert env_run.returncode == 0, env_run.stderr
    local = work / "runs" / "hub" / "alice--saes"
    written = json.loads((local / "eval.json").read_text())
    assert set(written["saes"]) >= set(HOOKS) and written["n_tokens"] >= 64
    assert json.loads(env_run.stdout)["saes"] == written["saes"]
