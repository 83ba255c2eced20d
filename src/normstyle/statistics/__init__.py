"""Per-channel activation statistics of any model: the streaming engine (``engine``) that
normalisation, diagnostics and the lab share, per-layer summaries and the report files
(``report``), and the ``stats`` diagnostics on a folder of images (``diagnostics``).

May import: ``normstyle.errors``, ``io``, ``nets`` and ``runtime``.
"""
