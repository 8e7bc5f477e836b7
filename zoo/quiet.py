"""Keep library chatter off the screen: Lightning's banners ("GPU available: False", tips) and deprecation noise.

Its own module so that both the CLI and the book's worker processes (fresh, spawned interpreters)
can call it without importing each other.
"""

import logging
import warnings

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_libraries() -> None:
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|exists and is not empty|resuming from a checkpoint).*")
    warnings.filterwarnings("ignore", module="lightning.*", category=UserWarning)
