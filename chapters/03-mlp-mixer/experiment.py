"""Chapter 03: the runs behind the chapter's numbers (see chapters/README.md).

Each rung at its book preset on tinyshakespeare, three seeds; `zoo chapter run 03` trains them and
writes results.json and figures/ here. Add ablations as further RunSpec(...) entries with leaderboard=False.
"""

from zoo.book import RunSpec

CORPUS = "tinyshakespeare"
RUNS = [
    RunSpec("mlp-mixer", preset="book", seeds=(0, 1, 2)),
]


def analyse(run_dirs: dict, corpus: str) -> dict:
    """The token mixing seed 0 learned, first and last block: the linear part W2·W1 of the token MLP
    y = W2 GELU(W1 x + b1) + b2 (masks applied), a T×T lower-triangular matrix that says how much
    position s feeds position t — one matrix for every text, every channel and every window."""
    import zoo

    model = zoo.load_run(run_dirs["mlp-mixer"][0]).model
    blocks, offsets = {}, {}
    for i in (0, len(model.blocks) - 1):
        mixing = model.blocks[i].token_mixing
        product = (mixing.w2 * mixing.mask2) @ (mixing.w1 * mixing.mask1)  # (T, T): the linear part of the token MLP
        blocks[str(i + 1)] = [[round(v, 4) for v in row] for row in product.tolist()]
        offsets[str(i + 1)] = offset_profile(product)
    return {"mixing": {"blocks": blocks, "n_layer": len(model.blocks), "offsets": offsets}}


def offset_profile(product, distances=(0, 1, 2, 3)) -> dict:
    """How a T×T mixing matrix spends its weight by distance d = t - s: the share of all |weight| on
    each distance, and the mean and spread over positions t of the weight at that distance (a spread
    near zero would be a shift-invariant filter, the same at every position)."""
    total = product.tril().abs().sum()
    out = {}
    for d in distances:
        band = product.diagonal(-d)  # (T - d,): the weights W[t, t - d]
        out[f"d{d}"] = {"share": (band.abs().sum() / total).item(), "mean": band.mean().item(), "std": band.std().item()}
    out["near"] = sum(out[f"d{d}"]["share"] for d in distances)  # all of the distances above together
    return out


def figures(results: dict, figdir) -> None:
    from zoo.book.figures import save_matrices

    blocks = results["values"]["mixing"]["blocks"]
    save_matrices([[(f"block {block}: W2·W1 of the token mixing (seed 0)", matrix, True) for block, matrix in blocks.items()]],
                  figdir / "mixing.png", "What the Mixer learned to mix: the same T×T weights whatever the text")
