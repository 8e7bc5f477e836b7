"""zoo — "You could have invented transformers": a ladder of language models, one harness, one book."""

from zoo.errors import ZooError
from zoo.registry import build, get, names, register


def __getattr__(name):
    # The training API pulls in Lightning; import it only when asked for, so `import zoo` stays light.
    if name in ("train", "make_config", "load_run"):
        import zoo.runs

        return getattr(zoo.runs, name)
    raise AttributeError(name)


__all__ = ["ZooError", "build", "get", "names", "register", "train", "make_config", "load_run"]
__version__ = "0.1.0"
