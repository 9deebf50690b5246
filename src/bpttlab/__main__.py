"""``python -m bpttlab ARGS``: one run, or a sweep with ``-m`` (see ``bpttlab.sweep``)."""

from bpttlab.sweep import main

if __name__ == "__main__":
    main()
