"""`sae-kit compare`'s figures keep every label inside the image, however long the run names."""

import pytest


def _texts_outside(fig) -> list[str]:
    """The texts of ``fig`` whose drawn box leaves the figure: what a saved PNG would crop."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text():
            continue
        extent = text.get_window_extent(renderer)
        if (extent.x0 < box.x0 - 0.5 or extent.x1 > box.x1 + 0.5
                or extent.y0 < box.y0 - 0.5 or extent.y1 > box.y1 + 0.5):
            out.append(text.get_text())
    return out


@pytest.mark.parametrize("n", [1, 2, 3])
def test_across_fits_default_run_names(n):
    """Default run directory names (model-loss-date-time) beside a heatmap of n x n cells."""
    import matplotlib.pyplot as plt

    from sae_kit.eval.analysis.plots import across_figure, fit_to_contents

    labels = [f"sae-kit-tiny-{loss}-20261207-22594{i}" for i, loss in
              zip(range(n), ["e2e", "local", "e2e+ds"], strict=False)]
    summary = {"saes": {label: {"within_max_cos_mean": 0.3} for label in labels},
               "pairs": [{"a": a, "b": b, "a_to_b_mean": 0.5, "b_to_a_mean": 0.7}
                         for i, a in enumerate(labels) for b in labels[i + 1:]]}
    fig = across_figure(labels, summary)
    try:
        fit_to_contents(fig)
        assert _texts_outside(fig) == []
        ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert ticks == labels  # whole names, not shortened to fit
    finally:
        plt.close(fig)
