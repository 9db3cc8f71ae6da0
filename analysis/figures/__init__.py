"""Paper figures (plotly, one template) of run dirs, exported as PDF/SVG/PNG with the plotted data as CSV.

- `theme`: the template (serif 9 pt, white, thin axes, Okabe–Ito / viridis) and one-/two-column sizes.
- `builders`: `(data frames..., **opts) -> (go.Figure, plotted DataFrame)`, one per figure.
- `export`: `export_figure` and `export_session` (one headless browser for a batch).
- `time_axis`: `TimeAxis` — diffusion time by the model's convention, log SNR under each tick.
- `report`: the registry `FIGURES` (name -> builder + run-dir inputs), `comparison_table` (`analysis.compare`'s
  table and Pareto flags, formatted as comparison.csv / .tex), `write_figures` (what `aselect figures RUN...
  --out DIR --format pdf,svg,png` runs).
"""
from analysis.figures.builders import (Plot, attribution_grid, class_curriculum_heatmap, curriculum_heatmap,
                                       emergence_budget, emergence_curves, hfr_scatter, immse_curve, loss_by_bin,
                                       mi_curves, pivot_grid, policy_marginals, policy_pareto, probe_curves,
                                       probe_heatmap, representation_vs_generation, seed_table_dots,
                                       segmentation_heatmap, umap_grid)
from analysis.figures.export import FORMATS, export_figure, export_session, find_browser
from analysis.figures.report import (FIGURES, FigureSpec, build_figure, comparison_table, missing_inputs,
                                     write_figures)
from analysis.figures.theme import FONT, OKABE_ITO, TEMPLATE, WIDTHS
from analysis.figures.time_axis import TimeAxis, run_time_axis

__all__ = ["FIGURES", "FONT", "FORMATS", "OKABE_ITO", "TEMPLATE", "WIDTHS", "FigureSpec", "Plot", "TimeAxis",
           "attribution_grid", "build_figure", "class_curriculum_heatmap", "comparison_table", "curriculum_heatmap",
           "emergence_budget", "emergence_curves", "export_figure", "export_session", "find_browser", "hfr_scatter",
           "immse_curve", "loss_by_bin", "mi_curves", "missing_inputs", "pivot_grid", "policy_marginals",
           "policy_pareto", "probe_curves", "probe_heatmap", "representation_vs_generation", "run_time_axis",
           "seed_table_dots", "segmentation_heatmap", "umap_grid", "write_figures"]
