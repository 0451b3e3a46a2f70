"""sae-kit: sparse autoencoders trained end to end (Braun et al. 2024)."""

__version__ = "0.1.0"
