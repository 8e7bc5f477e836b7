"""Chapter 06: positions, heads, residuals.

Runs: vaswani at its book preset (the paper's Adam and warmup/inverse-square-root schedule, no dropout),
three seeds. Ablations: the paper's label smoothing ε = 0.1, which the rung leaves off (one seed); and
vaswani trained exactly as the set transformer of chapter 5 is trained (its optimiser, schedule and
learning rate), three seeds, so that what separates the two chapters' models is the model.
"""

import dataclasses

from zoo.book import RunSpec
from zoo.config import OptimConfig
from zoo.registry import get

CORPUS = "tinyshakespeare"
SET_TRANSFORMER_OPTIM = {**dataclasses.asdict(OptimConfig()), **get("set-transformer").preset("book")["optim"]}
RUNS = [
    RunSpec("vaswani", preset="book", seeds=(0, 1, 2)),
    RunSpec("vaswani", name="label-smoothing", label="label smoothing 0.1", overrides={"optim": {"label_smoothing": 0.1}}, seeds=(0,), leaderboard=False),
    RunSpec("vaswani", name="set-recipe", label="trained like the set transformer", overrides={"optim": SET_TRANSFORMER_OPTIM},
            seeds=(0, 1, 2), leaderboard=False),
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Seed 0's attention on the same 64 validation characters as chapter 5's, first and last layer."""
    from zoo.attention import first_and_last_layer

    return {"attention": first_and_last_layer(run_dirs["vaswani"][0], corpus)}


def figures(results: dict, figdir) -> None:
    """Three ways to mix positions, on one text: the Mixer's learned weights (chapter 3), the set
    transformer's attention (chapter 5) and this rung's, first layer above and last layer below."""
    from zoo.book import load_book
    from zoo.book.figures import save_matrices

    book = load_book()
    values = {slug: ((book.get(slug) or {}).get("values") or {}) for slug in ("03-mlp-mixer", "05-set-transformer")}
    mine = results["values"]["attention"]
    columns = []  # (title, [first layer's matrix, last layer's], diverging)
    if "mixing" in values["03-mlp-mixer"]:
        m = values["03-mlp-mixer"]["mixing"]
        columns.append(("Mixer: learned W2·W1", [m["blocks"]["1"], m["blocks"][str(m["n_layer"])]], True))
    if "attention" in values["05-set-transformer"]:
        columns.append(("set transformer: attention", list(values["05-set-transformer"]["attention"]["layers"].values()), False))
    columns.append(("Vaswani: attention", list(mine["layers"].values()), False))
    grid = [[(f"{title}, {which}", layers[row], diverging) for title, layers, diverging in columns]
            for row, which in enumerate(("first layer", "last layer"))]
    save_matrices(grid, figdir / "attention.png", "Row t mixes the inputs s ≤ t: by fixed learned weights (Mixer)\nor by "
                  "weights computed from the characters (attention); text: the first 64 validation characters", mine["text"])
