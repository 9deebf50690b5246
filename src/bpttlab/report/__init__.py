"""The report stage: read one sweep back from MLflow, draw the figures, tabulate the remedies.

    python -m bpttlab.report [--tracking-uri URI] [--experiment NAME] [--sweep-id ID]
                             [--out reports]

Modules: ``load`` (MLflow -> tidy DataFrames), ``figures`` (one function per figure),
``tables`` (paired remedy effects with bootstrap intervals), ``render`` (report.md / report.html,
artifacts on the sweep's parent run), ``screenshot`` (headless-browser check of report.html),
``synthetic`` (a synthetic sweep for tests and demos).
"""

from bpttlab.report.load import NoSweepError, ReportError, SweepData, load_sweep

__all__ = ["NoSweepError", "ReportError", "SweepData", "load_sweep"]
