"""Chapter 05: attention without order.

Runs: set-transformer at its book preset (4 layers), three seeds. Ablation, one seed: one layer, which
is exactly permutation-invariant over the prefix (tests/test_set_transformer.py pins it), so the model
can only use which characters came before, not where.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("set-transformer", preset="book", seeds=(0, 1, 2)),
    RunSpec("set-transformer", name="one-layer", label="1 layer (a pure set)", overrides={"model": {"n_layer": 1}}, seeds=(0,), leaderboard=False),
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    """Seed 0's attention on the first 64 characters of the validation split, averaged over heads, in the
    first and the last layer: a T×T matrix like the Mixer's, but computed from this text."""
    from zoo.attention import first_and_last_layer

    return {"attention": first_and_last_layer(run_dirs["set-transformer"][0], corpus)}


def figures(results: dict, figdir) -> None:
    """The Mixer's learned mixing (chapter 3) beside this rung's attention on one text."""
    from zoo.book import load_book
    from zoo.book.figures import save_matrices

    attention = results["values"]["attention"]
    mixer = ((load_book().get("03-mlp-mixer") or {}).get("values") or {}).get("mixing")
    panels = ([("Mixer, block 1: learned W2·W1 (any text)", mixer["blocks"]["1"], True)] if mixer else []) + [
        (f"set transformer, layer {layer}: attention on this text", matrix, False) for layer, matrix in attention["layers"].items()]
    save_matrices([panels], figdir / "attention.png", "Mixing weights: learned per position pair (Mixer) or computed from "
                  "the content (attention);\ntext: the first 64 validation characters", attention["text"])
