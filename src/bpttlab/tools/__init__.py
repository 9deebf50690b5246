"""Infrastructure around the study: the tracking server, the MLflow UI, benchmarks, screenshots.

Nothing here computes a result; the science lives in the modules above (models, tasks, train,
tracking, report, reproduce).
"""
