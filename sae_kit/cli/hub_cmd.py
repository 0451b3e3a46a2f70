"""`sae-kit push` and `sae-kit pull`: share SAEs on the Hugging Face Hub (docs/hub.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.errors import counted

if TYPE_CHECKING:
    from sae_kit.store.hub import Upload


@friendly_errors
def push(
    run_dir: str = typer.Argument(..., help="Run directory written by `sae-kit train`."),
    repo_id: str = typer.Argument(..., help="Hub model repo, namespace/name; created if needed."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    revision: str = typer.Option(
        None, "--revision", help="Branch to commit to, created if needed; default: main."
    ),
    license: str = typer.Option(
        None, help="License id for the model card; default: the base model's license on the Hub "
        "(MIT for the built-in model, else 'other')."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the files and model card that would be uploaded; no "
        "network, no token."
    ),
) -> None:
    """Upload a run's SAEs, config and a model card to the Hub in one commit."""
    from sae_kit.network import parse_hub_ref
    from sae_kit.store.hub import hub_token, plan_upload
    from sae_kit.store.hub import push as push_upload

    ref = parse_hub_ref(repo_id, allow_subfolder=False)
    where = f"{ref.repo_id} (branch {revision or 'main'}, {'private' if private else 'public'})"
    token = None if dry_run else hub_token()
    upload = plan_upload(run_dir, ref.repo_id, license)  # every local check before any network
    if token is None:
        _print_plan(upload, where)
        return
    url, sent = push_upload(upload, ref, token, private=private, revision=revision)
    err.print(f"[green]pushed[/] {len(sent.files)} files ({len(sent.hook_points)} SAEs) to "
              f"{where}; card: {_card_summary(sent.card)}")
    typer.echo(url)


def _card_summary(card: str) -> str:
    import yaml

    meta = yaml.safe_load(card.split("---\n")[1])
    base = meta.get("base_model") or "none (not a Hub model)"
    return f"license {meta['license']}, base_model {base}"


def _print_plan(upload: Upload, where: str) -> None:
    typer.echo(f"would upload {len(upload.files)} files to {where} in one commit:")
    for name, src in upload.files.items():
        size = len(src) if isinstance(src, bytes) else Path(src).stat().st_size
        typer.echo(f"  {size:>12,}  {name}")
    typer.echo(f"\n--- README.md ---\n{upload.card}", nl=False)
    err.print("note: a real push asks the Hub for the base model's canonical id and license "
              "(unless --license is given); the card above uses the model id as written")


@friendly_errors
def pull(
    repo: str = typer.Argument(
        ..., help="namespace/name for a whole run, or namespace/name/HOOK_POINT for one SAE."
    ),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit; default: main."),
    out: str = typer.Option(
        None, "--out", help="Directory to download into; default: the Hugging Face cache."
    ),
) -> None:
    """Download SAEs pushed with `sae-kit push`, check they load, and print their directory."""
    from sae_kit.network import parse_hub_ref
    from sae_kit.store.hub import download

    path = download(parse_hub_ref(repo), revision=revision, out=out)
    from sae_kit.store.sae_dir import (  # torch: only once there is something to load
        is_sae_dir,
        load_sae_dir,
        sae_dirs,
    )

    dirs = [path] if is_sae_dir(path) else list(sae_dirs(path).values())
    for sae_dir in dirs:
        load_sae_dir(sae_dir)  # a corrupt or incomplete download fails here, not later
    err.print(f"[green]pulled[/] {counted(len(dirs), 'SAE')}: {', '.join(d.name for d in dirs)}")
    typer.echo(str(path))
