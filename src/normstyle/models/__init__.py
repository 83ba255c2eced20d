"""Networks with named layers."""

from normstyle.models.chain import chain_of, run_chain, truncated_forward
from normstyle.models.vgg import ARCHITECTURES, VGG, torchvision_names, vgg_layer_names

__all__ = [
    "ARCHITECTURES",
    "VGG",
    "chain_of",
    "run_chain",
    "torchvision_names",
    "truncated_forward",
    "vgg_layer_names",
]
