"""The machine a run is on: the device and the precision the network runs in, decided from
what the hardware computes natively (``precision``), and the memory a run needs against what
this machine has (``memory``). Serves stylisation, calibration and statistics alike, which is
why it is its own package and not part of ``style``.

May import: ``normstyle.errors`` only.
"""
