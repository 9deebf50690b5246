"""Reproductions of published results on vanishing and exploding gradients.

One module per result (``bound``, ``cliff``, ``gradnorm_time``, ``adding``, ``temporal_order``,
``latch``, ``copy_digits``): each runs its grid ``experiments/repro_<name>.yaml`` (or records an
analytic computation), loads the stored runs from MLflow, draws a figure in the style of the
original and computes verdict rows. ``python -m bpttlab.reproduce`` runs all of them and writes
``reports/reproduce.md`` and ``reports/reproduce.html``.
"""
