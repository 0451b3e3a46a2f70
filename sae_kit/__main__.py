"""`python -m sae_kit ...` runs the CLI (this is also what `torchrun -m sae_kit` uses)."""

from sae_kit.cli import main

if __name__ == "__main__":
    main()
