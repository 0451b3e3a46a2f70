"""`sae-kit sweep SWEEP.toml`: a grid of runs in shared passes, trained, evaluated and plotted.

``spec`` reads the sweep file into points (one TrainConfig each) and groups them into runs that
can share one pass (``sae_kit.train.group``); it imports no torch. ``runner`` trains, resumes and
evaluates the groups (a point that stopped on a non-finite step is reported, not retrained);
``changes`` refuses a point whose directory holds a run of other settings than the file now
asks for; ``report`` writes the table and the Pareto plot. May import ``record``, ``train``,
``eval``, ``store`` and the top-level kernel modules; never ``cli``.
"""
