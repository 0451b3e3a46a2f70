"""Tensor files of reports are written as the umask says (safetensors alone writes 0600)."""

import os

import torch

from sae_kit.store.files import save_tensors


def test_saved_tensors_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        save_tensors({"a": torch.zeros(2)}, tmp_path / "x.safetensors", metadata={"k": "v"})
    finally:
        os.umask(old)
    assert (tmp_path / "x.safetensors").stat().st_mode & 0o777 == 0o644


def test_no_module_writes_safetensors_but_through_save_tensors():
    """safetensors' save_file makes 0600 files; every writer goes through store.files or
    fixes the mode itself (checkpoints, SAE weights)."""
    from pathlib import Path

    import sae_kit

    root = Path(sae_kit.__file__).parent
    allowed = {"store/files.py", "train/checkpoint.py", "store/sae_dir.py"}
    callers = {str(p.relative_to(root)) for p in root.rglob("*.py")
               if "save_file(" in p.read_text()}
    assert callers <= allowed, callers - allowed
