"""bpttlab's Hydra plugins, chosen in ``conf/config.yaml``: the sweeper ``hydra/sweeper: bpttlab``
(:mod:`.checked_sweeper`) and the launcher ``hydra/launcher: bpttlab_joblib``
(:mod:`.joblib_launcher`).

Hydra finds plugins only under the ``hydra_plugins`` namespace package; the work they do lives
in ``bpttlab`` itself (:mod:`bpttlab.preflight`, :mod:`bpttlab.hydra_jobs`).
"""
