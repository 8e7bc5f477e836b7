"""Name -> rung registry: ``@register`` a model class, ``build`` it by name, read its presets.

Rungs come from two places: the modules in ``zoo.models`` (imported on first use) and any installed
distribution that declares an entry point in the group ``zoo.rungs`` (``name = "pkg.module:Class"``
or just ``"pkg.module"``; importing it runs its ``@register``). Nothing here dispatches on names:
the harness, CLI and tests only ever see ``RungInfo`` and the class it points to.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from zoo.config import REQUIRED_PRESETS, deep_merge
from zoo.errors import ZooError

ENTRY_POINT_GROUP = "zoo.rungs"
PRESET_SECTIONS = ("model", "data", "optim", "trainer")


@dataclass(frozen=True)
class RungInfo:
    name: str
    cls: type
    chapter: str | None  # e.g. "07-gpt"; orders the ladder
    index: int  # registration order, the tie-break within a chapter

    @property
    def summary(self) -> str:
        """First line of the class docstring: the paper and what the rung adds."""
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""

    @property
    def trainable(self) -> bool:
        return getattr(self.cls, "trainable", True)

    @property
    def stateful(self) -> bool:
        return getattr(self.cls, "stateful", False)

    @property
    def compile_pays(self) -> bool:
        """Whether ``--trainer.compile auto`` compiles this rung: a rung declares it where it was measured faster."""
        return getattr(self.cls, "compile_pays", False)

    def preset(self, name: str) -> dict:
        """The preset's overrides, as a dict with the sections model/data/optim/trainer."""
        presets = self.cls.presets
        if name not in presets:
            raise ZooError(f"rung {self.name!r} has no preset {name!r} (it has: {', '.join(presets)})")
        return deep_merge({s: {} for s in PRESET_SECTIONS}, presets[name])


_REGISTRY: dict[str, RungInfo] = {}
_BROKEN: dict[str, str] = {}  # entry-point name -> why that plug-in is not usable (every other rung still is)
_loaded = False


def register(name: str, *, chapter: str | None = None):
    """Class decorator that adds a rung to the ladder under ``name``.

    The class must define ``Config`` (a dataclass of its hyperparameters) and ``presets``
    (at least ``quick`` and ``book``, REQUIRED_PRESETS). See ``zoo/models/_template.py``.
    """

    def decorate(cls):
        if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"rung {name!r}: {cls.__name__}.Config must be a dataclass")
        missing = set(REQUIRED_PRESETS) - set(getattr(cls, "presets", {}))
        if missing:
            raise TypeError(f"rung {name!r}: presets must include {sorted(missing)}")
        for preset, sections in cls.presets.items():
            bad = set(sections) - set(PRESET_SECTIONS)
            if bad:
                raise TypeError(f"rung {name!r} preset {preset!r}: unknown sections {sorted(bad)}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.cls.__qualname__ != cls.__qualname__:
            raise TypeError(f"rung name {name!r} is already registered by {existing.cls.__module__}")
        cls.rung_name = name
        index = existing.index if existing else len(_REGISTRY)
        _REGISTRY[name] = RungInfo(name=name, cls=cls, chapter=chapter, index=index)
        return cls

    return decorate


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("zoo.models")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plug-in must not take the whole CLI down: note it, load the rest
            first = (str(e).strip().splitlines() or [""])[0]
            _BROKEN[ep.name] = f"rung plug-in {ep.name!r} ({ep.value}) could not be loaded: {type(e).__name__}: {first}"
            continue
        if ep.name not in _REGISTRY:
            _BROKEN[ep.name] = (f"rung plug-in {ep.name!r} ({ep.value}) loaded but registered no rung named {ep.name!r}: "
                                f"is @register({ep.name!r}) missing on its class?")


def broken() -> dict[str, str]:
    """Installed plug-ins that could not be used, by entry-point name, each with one line saying why."""
    _load_all()
    return dict(_BROKEN)


def infos() -> list[RungInfo]:
    """Every registered rung, in ladder order (by chapter, then registration)."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda r: (r.chapter or "99", r.index))


def names() -> list[str]:
    return [r.name for r in infos()]


def get(name: str) -> RungInfo:
    _load_all()
    if name not in _REGISTRY and name in _BROKEN:
        raise ZooError(_BROKEN[name])
    if name not in _REGISTRY:
        valid = names()
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ZooError(f"unknown rung {name!r}{hint} (valid: {', '.join(valid)})")
    return _REGISTRY[name]


def model_config(name: str, vocab_size: int, block_size: int, **overrides):
    """The rung's Config with vocab_size and block_size bound from the data."""
    cls = get(name).cls
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(overrides) - fields
    if unknown:
        raise ZooError(f"rung {name!r} has no option(s) {', '.join(sorted(unknown))} (valid: {', '.join(sorted(fields - {'vocab_size', 'block_size'}))})")
    bound = {"vocab_size": vocab_size, "block_size": block_size}
    values = {**{k: v for k, v in bound.items() if k in fields}, **overrides}
    try:
        return cls.Config(**values)
    except (TypeError, ValueError) as e:
        raise ZooError(f"invalid options for rung {name!r}: {e}") from e


def build(name: str, vocab_size: int, block_size: int = 64, **overrides):
    """Construct rung ``name`` for a vocabulary and window, with Config fields overridden."""
    config = model_config(name, vocab_size, block_size, **overrides)
    try:
        return get(name).cls(config)
    except (ValueError, AssertionError) as e:
        raise ZooError(f"impossible hyperparameters for rung {name!r}: {e}") from e
