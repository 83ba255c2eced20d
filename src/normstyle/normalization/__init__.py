"""Mean-activation normalisation of ReLU conv nets (Gatys et al. 2016, §2), in cascade: what a
network's layout allows (``layout``), the per-filter means and their file format (``means``),
the rescaling itself (``cascade``), how well a network is normalised (``checks``), and the
folder workflows of ``normstyle normalize`` (``calibrate``).

May import: ``normstyle.errors``, ``io``, ``nets``, ``runtime`` and ``statistics``.
"""
