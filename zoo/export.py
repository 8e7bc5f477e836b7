"""Export a trained ``gpt`` run to the Hugging Face format: ``zoo export RUN_DIR OUT --format hf``.

``gpt``'s recipe is Llama's, so the export is a ``LlamaForCausalLM`` with the same weights, renamed:

    zoo (gpt)                           Hugging Face (Llama)
    wte                                 model.embed_tokens
    blocks.i.norm_1 / norm_2            model.layers.i.input_layernorm / post_attention_layernorm
    blocks.i.attn.qkv  (rows q | k | v) model.layers.i.self_attn.q_proj, k_proj, v_proj
    blocks.i.attn.proj                  model.layers.i.self_attn.o_proj
    blocks.i.mlp.gate_up (rows g | u)   model.layers.i.mlp.gate_proj, up_proj
    blocks.i.mlp.down                   model.layers.i.mlp.down_proj
    norm_f, lm_head                     model.norm, lm_head (tied to embed_tokens when the run ties them)

Nothing else needs converting: the rung's RoPE already pairs dimension i with i + head_dim/2 (Llama's
``rotate_half``), its heads are contiguous blocks of head_dim rows in each projection as in Llama's, its
RMSNorm is x / sqrt(mean x² + ε) · g with ε = 1e-6 inside the square root, its MLP is
down(SiLU(gate) ⊙ up), and it has no biases. A run that switched any of that off (LayerNorm, post-norm,
sinusoidal positions, a ReLU MLP, biases, QK-norm) is not a Llama and is refused, as are the other rungs.

The tokenizer is a character-level ``tokenizers`` model with the run's own vocabulary: every character
one token, no normaliser, no special tokens (a BOS or EOS id would collide with a real character), and a
decoder that joins characters without inserting spaces.

One difference stays: zoo's ``gpt`` sees at most ``block_size`` characters and zoo sample slides that
window; the exported model attends to its whole input (``max_position_embeddings`` is the block size,
which RoPE does not enforce). On texts up to ``block_size`` characters the two agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from zoo.errors import ZooError

FORMATS = ("hf",)
EXTRA = 'pip install -e ".[hf]"'
LLAMA_RECIPE = {"norm": "rmsnorm", "prenorm": True, "positions": "rope", "mlp": "swiglu", "bias": False, "qk_norm": False}


def require_transformers():
    """The optional extra, or one line naming it."""
    try:
        import tokenizers  # noqa: F401
        import transformers
    except ImportError:
        raise ZooError(f"exporting to Hugging Face needs transformers and tokenizers: {EXTRA}") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" bars: one export, no progress to show


def check_exportable(rung: str, config) -> None:
    """Only ``gpt`` with Llama's recipe maps onto a Hugging Face architecture exactly."""
    if rung != "gpt":
        raise ZooError(f"only gpt runs can be exported (--format hf makes a Llama model; this run is {rung!r}, "
                       "which no Hugging Face architecture computes exactly)")
    off = [f"{k}={getattr(config, k)!r}" for k, v in LLAMA_RECIPE.items() if getattr(config, k) != v]
    if off:
        raise ZooError(f"this gpt run is not a Llama ({', '.join(off)}); only runs with gpt's default recipe export")


def llama_config(config, vocab_size: int):
    """A transformers LlamaConfig with the run's sizes."""
    from transformers import LlamaConfig

    from zoo.models.gpt import swiglu_hidden

    C, h = config.n_embd, config.n_head
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=C, intermediate_size=config.mlp_hidden or swiglu_hidden(C),
        num_hidden_layers=config.n_layer, num_attention_heads=h, num_key_value_heads=h, head_dim=C // h,
        hidden_act="silu", max_position_embeddings=config.block_size, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_base)},
        attention_bias=False, mlp_bias=False, attention_dropout=0.0, tie_word_embeddings=config.tie_embeddings,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, dtype="float32")


def llama_state_dict(model) -> dict[str, torch.Tensor]:
    """gpt's weights under Llama's names (see the table in the module docstring)."""
    C = model.config.n_embd
    out = {"model.embed_tokens.weight": model.wte.weight, "model.norm.weight": model.norm_f.weight, "lm_head.weight": model.lm_head.weight}
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split(C, dim=0)  # (C, C) each: the rows of q, then k, then v
        gate, up = block.mlp.gate_up.weight.chunk(2, dim=0)  # (H, C) each
        out.update({p + "input_layernorm.weight": block.norm_1.weight, p + "post_attention_layernorm.weight": block.norm_2.weight,
                    p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                    p + "self_attn.o_proj.weight": block.attn.proj.weight,
                    p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": block.mlp.down.weight})
    return {name: t.detach().float().contiguous().clone() for name, t in out.items()}


def char_tokenizer(vocab: list[str]):
    """A fast tokenizer that maps each character to its id in the run's vocabulary and back, exactly."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({ch: i for i, ch in enumerate(vocab)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character its own piece
    tok.decoder = decoders.Fuse()  # join the pieces as they are: no spaces between characters
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, model_max_length=10**9)


def export_hf(model, vocab: list[str], rung: str, out) -> Path:
    """Write ``model`` (a gpt) and its vocabulary to a new directory ``out`` that transformers loads with
    AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained."""
    require_transformers()
    check_exportable(rung, model.config)
    out = Path(out)
    if out.exists():
        raise ZooError(f"{out} already exists; choose a new directory (an export never overwrites)")
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(llama_config(model.config, len(vocab)))
    missing, unexpected = hf.load_state_dict(llama_state_dict(model), strict=False)
    if unexpected or [m for m in missing if not m.endswith("rotary_emb.inv_freq") and not (m == "lm_head.weight" and model.config.tie_embeddings)]:
        raise ZooError(f"internal: the weight names do not match Llama's (missing {missing}, unexpected {unexpected})")
    if model.config.tie_embeddings:
        hf.tie_weights()
    hf.eval()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        raise ZooError(f"{tmp} is left over from an earlier export; remove it first")
    hf.save_pretrained(tmp, safe_serialization=True)
    char_tokenizer(vocab).save_pretrained(tmp)
    (tmp / "zoo_export.json").write_text(json.dumps({"rung": rung, "block_size": model.config.block_size,
                                                     "note": "zoo's gpt sees at most block_size characters"}, indent=2) + "\n")
    tmp.rename(out)  # the directory appears complete or not at all
    return out


def export_run(run_dir, out, fmt: str = "hf") -> Path:
    """``zoo export``: a run directory to ``out`` in format ``fmt``."""
    from zoo.runs import load_run

    if fmt not in FORMATS:
        raise ZooError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    run = load_run(run_dir)
    return export_hf(run.model, list(run.tokenizer.vocab), run.config.rung, out)  # checks the extra and the rung
