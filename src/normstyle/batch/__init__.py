"""Many images: batch jobs from a manifest (JSON lines) or from globs, run on a pool of local
processes or on a Ray cluster, each failure isolated, every outcome recorded, reruns resumed.
``manifest`` reads and checks the jobs, ``work`` is what a worker does with one, ``engines``
runs them (local processes, Ray), ``runner`` skips what is done and records the rest.

May import: ``normstyle.errors``, ``io``, ``style`` and ``web.jobs`` (its PNG writer).
"""
