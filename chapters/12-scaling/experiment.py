"""Chapter 12: scaling — does the number of parameters matter more than the shape, and how forgiving is
the learning rate under warm-up and decay? (Kaplan et al. 2020's two claims, at this CPU's scale.)

Every run is the book's gpt recipe (AdamW, β = (0.9, 0.95), weight decay 0.1, warm-up 100 steps, cosine
to a tenth) at 800 steps of 16 × 128 characters — 40 % of the ladder's budget, so that the grid fits in
the chapter's 45 minutes — unless its name says otherwise:

* shapes ``sLxC``: L blocks of width C (4 heads) at three non-embedding budgets, about 12·L·C² =
  50k, 200k and 800k parameters; three seeds at depth 4 of each budget, for the noise floor;
* heads ``hN``: the book's 4 × 128 with N heads;
* learning rates ``SCHEDULE-lrI``: the book's 4 × 128 at learning rate LRS[I] under four schedules —
  warm-up + cosine (the recipe; its lr 6e-3 point is ``s4x128``), warm-up + linear decay, constant after
  warm-up, and cosine with no warm-up;
* Muon ``muon-lrI`` (``--optim.optimizer muon``) at the same learning rates, and ``muon-long`` at the
  book's full budget, against chapter 7's ``gpt`` (shared).
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
STEPS = 800  # 40 % of the ladder's 2,000 steps
SHORT = {"trainer": {"max_steps": STEPS, "val_every": 100}}
BUDGETS = {  # (n_layer, n_embd) holding about 12·L·C² non-embedding parameters
    "50k": ((1, 64), (2, 48), (4, 32), (8, 24)),
    "200k": ((1, 128), (2, 96), (4, 64), (8, 48)),
    "800k": ((1, 256), (2, 192), (4, 128), (8, 96)),
}
HEADS = (1, 2, 8)  # at 4 × 128, beside the recipe's 4
LRS = (6e-4, 1.3e-3, 2.8e-3, 6e-3, 1.3e-2, 2.8e-2, 6e-2)  # two orders of magnitude around the recipe's 6e-3
RECIPE_LR = 3  # LRS[3] is the recipe's
SCHEDULES = {  # the recipe's cosine over all seven; the others over the five middle points
    "cosine": {},
    "linear": {"schedule": "linear"},
    "constant": {"schedule": "constant"},
    "cold": {"warmup_steps": 0},  # cosine without warm-up
}


def merge(*parts: dict) -> dict:
    from zoo.config import deep_merge

    out: dict = {}
    for part in parts:
        out = deep_merge(out, part)
    return out


def shape(L: int, C: int, heads: int = 4) -> dict:
    return {"model": {"n_layer": L, "n_embd": C, "n_head": heads}}


def lr_points(schedule: str) -> range:
    return range(len(LRS)) if schedule == "cosine" else range(1, len(LRS) - 1)


RUNS = [
    RunSpec("gpt", shared_with="07-gpt", leaderboard=False),
    # --8<-- [start:shapes]
    *(RunSpec("gpt", name=f"s{L}x{C}", label=f"{L} × {C}", overrides=merge(SHORT, shape(L, C)), leaderboard=False,
              seeds=(0, 1, 2) if L == 4 else (0,))
      for shapes in BUDGETS.values() for L, C in shapes),
    *(RunSpec("gpt", name=f"h{h}", label=f"4 × 128, {h} head{'s' if h > 1 else ''}", overrides=merge(SHORT, shape(4, 128, h)),
              seeds=(0,), leaderboard=False) for h in HEADS),
    # --8<-- [end:shapes]
    # --8<-- [start:rates]
    *(RunSpec("gpt", name=f"{schedule}-lr{i}", label=f"{schedule}, lr {LRS[i]:g}", seeds=(0,), leaderboard=False,
              overrides=merge(SHORT, shape(4, 128), {"optim": {"lr": LRS[i], **options}}))
      for schedule, options in SCHEDULES.items() for i in lr_points(schedule) if not (schedule == "cosine" and i == RECIPE_LR)),
    *(RunSpec("gpt", name=f"muon-lr{i}", label=f"Muon, lr {LRS[i]:g}", seeds=(0,), leaderboard=False,
              overrides=merge(SHORT, shape(4, 128), {"optim": {"optimizer": "muon", "lr": LRS[i]}})) for i in lr_points("muon")),
    RunSpec("gpt", name="muon-long", label="Muon, the book's budget", seeds=(0,), leaderboard=False,
            overrides={"optim": {"optimizer": "muon"}}),
    # --8<-- [end:rates]
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Not yet: the runs come first (see the chapter's note). Returns what the run table cannot show."""
    return {"steps": STEPS, "lrs": list(LRS)}
