"""zoo — "You could have invented transformers": a ladder of language models, one harness, one book."""

from zoo.errors import ZooError
from zoo.registry import build, get, names, register

__all__ = ["ZooError", "build", "get", "names", "register"]
__version__ = "0.1.0"
