"""Inference FLOPs per query from a model config, so methods can be compared on cost as well as accuracy.

Conventions (nanoGPT-style accounting):

* a matmul of (M, K) by (K, N) costs 2*M*N*K FLOPs (one multiply and one add per term);
* counted: the q/k/v/o projections, the MLP (3 matmuls when gated as in Llama/Qwen/Gemma, 2 when plain
  as in GPT-2), the attention scores (Q K^T) and weighted values (P V), and the LM head;
* attention is counted over the full key length (past + new) for every query position, without halving
  for the causal mask, because that is what SDPA and eager attention actually compute;
* not counted: embedding lookups, norms, rotary embeddings, softmax, biases, activations, residual adds
  and other elementwise ops; they are O(tokens * hidden), negligible next to the matmuls;
* one query means batch size 1; token counts may be floats (per-query averages) because every formula
  is a polynomial in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skintern.errors import SkinternError

# Model families whose MLP is up-projection -> activation -> down-projection (no gate matmul).
_PLAIN_MLP_TYPES = frozenset(
    {"gpt2", "gpt_neo", "gptj", "gpt_neox", "gpt_bigcode", "opt", "bloom", "falcon", "phi", "starcoder2"}
)


@dataclass(frozen=True)
class ModelShape:
    """Everything the FLOP count needs, independent of the model family's field names."""

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool = True


def _field(config: Any, *names: str) -> Any:
    """First non-None attribute among `names`: families spell the same quantity differently."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    raise SkinternError(f"model config ({type(config).__name__}): missing field {names[0]!r}")


def model_shape(config: Any) -> ModelShape:
    """Read a transformers config (Llama, Qwen2, Gemma3 incl. its text config, Mistral, GPT-2-like)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    hidden = int(_field(config, "hidden_size", "n_embd", "d_model"))
    n_heads = int(_field(config, "num_attention_heads", "n_head"))
    head_dim = getattr(config, "head_dim", None) or hidden // n_heads
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    return ModelShape(
        n_layers=int(_field(config, "num_hidden_layers", "n_layer", "num_layers")),
        hidden=hidden,
        n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        head_dim=int(head_dim),
        intermediate=int(intermediate),
        vocab=int(_field(config, "vocab_size")),
        gated_mlp=getattr(config, "model_type", "") not in _PLAIN_MLP_TYPES,
    )


def _dense_flops_per_token(shape: ModelShape) -> float:
    """Projection and MLP FLOPs for one token through all layers (attention-length independent)."""
    q_out = shape.n_heads * shape.head_dim
    kv_out = shape.n_kv_heads * shape.head_dim
    projections = 2 * shape.hidden * (q_out + 2 * kv_out) + 2 * q_out * shape.hidden
    mlp = (3 if shape.gated_mlp else 2) * 2 * shape.hidden * shape.intermediate
    return shape.n_layers * (projections + mlp)


def forward_flops(
    shape: ModelShape, new_tokens: float, past_tokens: float = 0, logits_tokens: float | None = None
) -> float:
    """One forward over `new_tokens` with `past_tokens` in the KV cache; LM head on `logits_tokens` positions."""
    if logits_tokens is None:
        logits_tokens = new_tokens
    key_len = past_tokens + new_tokens
    attention = shape.n_layers * 2 * (2 * new_tokens * key_len * shape.n_heads * shape.head_dim)
    lm_head = 2 * logits_tokens * shape.hidden * shape.vocab
    return float(new_tokens * _dense_flops_per_token(shape) + attention + lm_head)


def prefill_flops(shape: ModelShape, prompt_tokens: float) -> float:
    """The prompt forward as HF generate runs it: the LM head only on the last position."""
    return forward_flops(shape, prompt_tokens, 0, logits_tokens=1)


def generation_flops(shape: ModelShape, prompt_tokens: float, generated_tokens: float) -> float:
    """Decode steps after prefill: the first token comes from prefill, so generated_tokens - 1 steps.

    Step i (1-based) sees prompt_tokens + i - 1 cached tokens. A one-token forward is linear in the cache
    length, so the sum equals the step count times one step at the mean cache length.
    """
    steps = max(generated_tokens - 1, 0)
    if steps == 0:
        return 0.0
    mean_past = prompt_tokens + (steps - 1) / 2
    return steps * forward_flops(shape, 1, mean_past)


def query_flops(shape: ModelShape, prompt_tokens: float, generated_tokens: float) -> dict[str, float]:
    """Prefill, generation and total FLOPs for one query of the given (average) lengths."""
    prefill = prefill_flops(shape, prompt_tokens)
    generation = generation_flops(shape, prompt_tokens, generated_tokens)
    return {"prefill": prefill, "generation": generation, "total": prefill + generation}
