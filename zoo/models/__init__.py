"""The ladder's rungs, one module each. Importing this package registers every rung in it.

Modules whose names start with an underscore (``_template.py``) are not rungs and are skipped.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
