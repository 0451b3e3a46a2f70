"""A synthetic model with known features and a known functional subset F (sae-kit plugin).

``sae-kit train --model synthetic:n_features=512,d_model=64`` trains on it like on any model;
``sae-kit bench RUN_DIR`` scores the SAEs against the ground truth. ``options`` holds the
settings, ``generator`` the features, ``network`` the model, ``source`` the plugin itself.
"""
