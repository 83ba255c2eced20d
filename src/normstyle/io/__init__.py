"""Input and output, and nothing else: decoding any image a user gives (``decode``), sizing it
for a network with the one resize function (``resize``), the step to and from tensors
(``tensors``), saving (``save``), safe file handling and atomic writes (``files``), the threaded
folder loader (``folders``), the built-in images (``builtin``) and figures (``figures``).

May import: ``normstyle.errors`` only. Knows no network, loss or statistic.
"""
