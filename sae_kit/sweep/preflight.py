"""Every point of a sweep checked before the first one trains.

A sweep trains for hours; an unknown loss or architecture, a bad plugin option or a misspelt
hook point in its last point must fail in one line before the first group starts, not after
the others have trained. Building a point's loss and resolving its options needs no model, so
this is quick (it imports the chosen plugins, and with them torch).
"""

from __future__ import annotations

from sae_kit.errors import SaeKitError
from sae_kit.sweep.spec import Sweep


def check_points(sweep: Sweep) -> None:
    """One ``error:`` line naming the file and point for the first point that cannot train."""
    from sae_kit.train.build import check_trackers, make_loss, resolve_defaults

    for point in sweep.points:
        try:
            resolve_defaults(point.config, make_loss(point.config))
            check_trackers(point.config.trackers)  # an unknown name, a missing W&B key
        except SaeKitError as exc:
            raise SaeKitError(f"{str(sweep.path)!r}, point {point.name!r}: {exc}; nothing was "
                              "trained") from None
