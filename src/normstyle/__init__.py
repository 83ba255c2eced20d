"""normstyle: Gatys et al. neural style transfer on a properly normalised VGG-19."""

__version__ = "0.1.0"

from normstyle.models import VGG
from normstyle.style import StyleOptions, stylize
from normstyle.weights import WEIGHT_SOURCES, get_weights

__all__ = ["VGG", "WEIGHT_SOURCES", "StyleOptions", "__version__", "get_weights", "stylize"]
