"""sae_dir.saved_every_sae: the one "did this run save its SAEs" rule of the sweep's point
state and the fine-tune recipe's finished pre-training."""

from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import is_sae_dir, saved_every_sae
from tests.helpers import make_sae_dir, write_run_record

HOOKS = ["blocks.0.hook_resid_pre", "transformer.h.1.mlp"]  # a module path counts as well


def test_a_run_has_saved_its_saes_once_every_hook_point_has_one(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    assert not saved_every_sae(run)  # no config.json: no run yet
    write_run_record(run.path, hook_points=HOOKS)
    assert not saved_every_sae(run)
    make_sae_dir(run.path, hook_point=HOOKS[0])
    assert is_sae_dir(run.sae(HOOKS[0])) and not saved_every_sae(run)
    make_sae_dir(run.path, hook_point=HOOKS[1])
    assert saved_every_sae(run)
