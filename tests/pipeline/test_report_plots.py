"""pipeline/report_plots.py: each figure is a valid embedded PNG (data URI) with labelled axes, grids carry their values
in % up to 8 x 8, and a figure with nothing to plot is None."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from igaudit.pipeline import report_plots as plots

PREFIX = "data:image/png;base64,"


@pytest.fixture
def drawn(monkeypatch):
    """The figures handed to _png, kept for a look at their axes after they are encoded."""
    figures, real = [], plots._png

    def keep(fig):
        figures.append(fig)
        return real(fig)
    monkeypatch.setattr(plots, "_png", keep)
    return figures


def decoded(uri: str) -> Image.Image:
    assert uri.startswith(PREFIX)
    im = Image.open(io.BytesIO(base64.b64decode(uri[len(PREFIX):], validate=True)))
    im.load()
    assert im.format == "PNG"
    return im


def cell_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_a_grid_is_a_png_with_its_values_in_percent_and_a_scale(drawn):
    uri = plots.grid_figure(np.array([[0.5, 0.25], [0.2, 0.05]]), "cat: mean |IG| grid")
    im = decoded(uri)
    assert 150 < im.width < 600 and 100 < im.height < 400      # 2.6 in + the scale at 100 dpi, cropped tight
    fig = drawn[0]
    assert cell_texts(fig) == ["50", "25", "20", "5.0"]           # >= 9.5% whole, smaller ones to a decimal
    grid_ax, bar_ax = fig.axes
    assert grid_ax.get_title() == "cat: mean |IG| grid"
    assert bar_ax.get_ylabel() == "% of |attribution| per cell"


def test_the_cells_are_written_up_to_8_by_8_only(drawn):
    plots.grid_figure(np.full((8, 8), 1 / 64), "eight")
    plots.grid_figure(np.full((9, 9), 1 / 81), "nine")
    assert cell_texts(drawn[0]) == ["1.6"] * 64
    assert cell_texts(drawn[1]) == []


def test_a_grid_of_zeros_still_draws():
    assert decoded(plots.grid_figure(np.zeros((4, 4)), "nothing")).width > 0


def test_the_png_is_quantized_smaller_than_matplotlibs_own_at_the_same_size(drawn):
    uri = plots.grid_figure(np.random.default_rng(0).dirichlet(np.ones(256)).reshape(16, 16), "noise")
    own = io.BytesIO()
    drawn[0].savefig(own, format="png", dpi=plots.DPI, bbox_inches="tight")
    im = decoded(uri)
    assert im.mode == "P" and im.size == Image.open(own).size
    assert len(uri) < len(plots.data_uri(own.getvalue()))


def test_no_gap_means_no_histogram():
    assert plots.gap_histogram(np.array([])) is None


def test_the_gap_histogram_says_its_count_median_and_what_the_last_bar_holds(drawn):
    gaps = np.concatenate([np.full(39, 0.01), [-3.0]])            # one image far beyond: 300%
    decoded(plots.gap_histogram(gaps))
    ax = drawn[0].axes[0]
    assert ax.get_title() == ("completeness gap, 40 images (median 1.00%)\n"
                              "the last bar also holds 1 images above 2.0% (largest 300%)")
    assert max(p.get_x() + p.get_width() for p in ax.patches) == pytest.approx(2.0)   # the axis ends at 2%
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 40 and heights[-1] == 1                # the outlier sits in the last bar
    assert ax.get_ylabel() == "images" and "%" in ax.get_xlabel()


def test_a_gap_histogram_without_outliers_has_a_one_line_title(drawn):
    plots.gap_histogram(np.linspace(0.0, 0.01, 10))
    assert "\n" not in drawn[0].axes[0].get_title()


def test_no_finite_confidence_means_no_plot():
    assert plots.confidence_plot({}) is None
    assert plots.confidence_plot({"a": np.array([]), "b": np.array([np.nan, np.inf])}) is None


def test_the_confidence_plot_has_one_box_per_class_with_its_count(drawn):
    uri = plots.confidence_plot({"ant": np.array([0.9, 0.8, np.nan]), "bee": np.array([0.4]), "cat": np.array([])})
    decoded(uri)
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ant (n=2)", "bee (n=1)"]   # NaN and empty dropped
    assert ax.get_xlim() == (0.0, 1.0) and "0–1" in ax.get_xlabel()


def test_beyond_30_classes_the_least_confident_are_plotted(drawn):
    by_class = {f"c{i:02d}": np.array([i / 40]) for i in range(40)}
    plots.confidence_plot(by_class)
    names = [t.get_text().split()[0] for t in drawn[0].axes[0].get_yticklabels()]
    assert names == [f"c{i:02d}" for i in range(plots.MAX_CLASSES_PLOTTED)]


def test_a_trend_names_its_runs_by_time_and_skips_missing_points(drawn):
    runs = ["run=20260301T120501.123Z", "run=20260302T000000.000Z", "mine"]
    decoded(plots.trend_plot("ant/region/r1-2c1-2", runs, [0.25, None, 0.5]))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2026-03-01 12:05:01", "2026-03-02 00:00:00", "mine"]
    assert [t.get_text() for t in ax.texts] == ["0.25", "0.50"]   # no label where a run has no value
    assert ax.get_ylim() == pytest.approx((0.0, 1.08)) and ax.get_title() == "ant/region/r1-2c1-2"
    y = ax.lines[0].get_ydata()
    assert y[0] == 0.25 and np.isnan(y[1]) and y[2] == 0.5


def test_a_stamp_that_is_not_a_time_stays_as_written():
    assert plots._run_time("run=2026-03-01") == "run=2026-03-01"
    assert plots._run_time("run=20260301X120501") == "run=20260301X120501"
