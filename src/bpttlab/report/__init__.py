"""The report stage: read one sweep back from MLflow, draw the figures, tabulate the remedies.

    python -m bpttlab.report [--tracking-uri URI] [--experiment NAME] [--sweep-id ID]
                             [--out reports]

Modules: ``load`` (find the sweep; its tables come from :mod:`bpttlab.tracking.reader`),
``figures`` (one function per figure, one style: ``style``), ``tables`` (paired remedy effects
with bootstrap intervals), ``build`` (what the report says; artifacts on the sweep's parent run),
``render`` (the Markdown/HTML renderer shared with the reproductions), ``screenshot``
(headless-browser check of report.html).
"""

from bpttlab.report.load import NoSweepError, ReportError, SweepData, load_sweep

__all__ = ["NoSweepError", "ReportError", "SweepData", "load_sweep"]
