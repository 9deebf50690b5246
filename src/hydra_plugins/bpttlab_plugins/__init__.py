"""bpttlab's Hydra plugins: the sweeper ``hydra/sweeper: bpttlab`` (chosen in ``conf/config.yaml``).

Hydra finds plugins only under the ``hydra_plugins`` namespace package; the work they do lives
in ``bpttlab`` itself (:mod:`bpttlab.preflight`).
"""
