"""Chapter 6: pretraining objectives, next-token prediction and masked language modelling.

Shapes: ``B`` batch, ``T`` tokens per sequence, ``V`` vocabulary size, ``D = d_model``.
Tokens are int64 or int32 ids in ``[0, V)``, in any memory layout (a view such as ``tokens[:, :-1]``). Labels use ``-100`` ("ignore this position") wherever
there is nothing to predict, the convention of ``torch.nn.functional.cross_entropy``.
"""

import torch
from torch import nn

from solutions.attention import causal_mask
from solutions.positional_encoding import sinusoidal_positional_encoding
from solutions.transformer_block import TransformerBlock

IGNORE_INDEX = -100


def shift_for_next_token(tokens: torch.Tensor):
    """Inputs and targets of next-token prediction: tokens (..., T) -> ``(inputs, targets)``,
    inputs ``tokens[..., :-1]`` and targets ``tokens[..., 1:]``, both (..., T-1), so that
    ``targets[..., t]`` is the token that follows ``inputs[..., :t+1]``; any integer dtype, kept.
    tokens is left unchanged (the results may be views of it)."""
    return tokens[..., :-1], tokens[..., 1:]


def mask_tokens(
    tokens: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
    special_token_ids=(),
):
    """BERT's corruption (Devlin et al., 2019): returns ``(inputs, labels)``, both of the
    shape of ``tokens`` (int64 or int32 ids, any shape) and of its dtype (int64 is accepted too).

    Every position whose token is not in ``special_token_ids`` is *selected* independently
    with probability ``mask_prob``. ``labels`` holds the original token at selected
    positions and -100 everywhere else. Of the selected positions, 80% become
    ``mask_token_id`` in ``inputs``, 10% a token drawn uniformly from the non-special ids
    of ``[0, vocab_size)`` (it may be the original token), and 10% keep their token; unselected positions are unchanged.
    All randomness comes from ``generator`` (the global generator when None). ``special_token_ids``:
    a list or tuple of ids, in any order. tokens and special_token_ids are left unchanged: ``inputs``
    is a new tensor.
    """
    special = torch.isin(tokens, torch.tensor(list(special_token_ids), dtype=tokens.dtype))
    selected = (torch.rand(tokens.shape, generator=generator) < mask_prob) & ~special
    labels = torch.where(selected, tokens, IGNORE_INDEX)

    action = torch.rand(tokens.shape, generator=generator)  # one draw decides 80 / 10 / 10
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_token_ids)])
    random_tokens = ordinary[torch.randint(len(ordinary), tokens.shape, generator=generator)]

    inputs = torch.where(to_mask, mask_token_id, tokens)
    inputs = torch.where(to_random, random_tokens, inputs)
    return inputs, labels


def language_model_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """Mean cross-entropy (in nats) over the positions whose label is not ``ignore_index``.

    logits (..., V), labels (...) int64; returns a 0-dim tensor, differentiable with
    respect to ``logits``. Equals ``F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1),
    ignore_index=ignore_index)``. logits and labels are left unchanged. Graded on its values and
    gradient; written without ``F.cross_entropy`` or ``F.nll_loss`` is advice (0 points).
    """
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    keep = labels != ignore_index
    log_probs = torch.log_softmax(logits[keep], dim=-1)  # log-sum-exp inside: no overflow
    return -log_probs.gather(-1, labels[keep, None]).mean()


# ---------------------------------------------------------------------------------------
# Models. Both are the same stack; they differ only in the attention mask. The submodule
# names are part of the contract (the grader loads these weights into a learner's model by
# name and compares the logits):
#
#   token_embedding  nn.Embedding(V, D)
#   positions        buffer, persistent=False (not a parameter, not in the state_dict): sinusoidal_positional_encoding(max_len, D) of
#                    chapter 4; a sequence of T tokens gets rows 0..T-1
#   blocks           nn.ModuleList of num_layers chapter-5 TransformerBlock(D, num_heads, d_ff,
#                    norm_first=True, dropout=dropout): Pre-LN
#   norm             nn.LayerNorm(D), the final LayerNorm, applied after the last block
#   head             nn.Linear(D, V), with a bias, not tied to the embedding
#
# logits = head(norm(blocks(token_embedding(tokens) + positions[:T]))). Dropout acts inside
# the blocks only (each block's sublayer outputs and FFN hidden activation), not on the
# embeddings or the logits. Training's backward reaches every parameter from the logits: nothing in
# forward runs under torch.no_grad(), is .detach()ed or read through .data, and forward changes in
# place no tensor a layer has read (autograd saved it). Methods use ``nn.Module.__init__`` and the module-level helpers
# below, so a notebook class can delegate to them.


def _build(model: nn.Module, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout):
    nn.Module.__init__(model)
    model.token_embedding = nn.Embedding(vocab_size, d_model)
    model.register_buffer("positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
    model.blocks = nn.ModuleList(
        TransformerBlock(d_model, num_heads, d_ff, norm_first=True, dropout=dropout) for _ in range(num_layers)
    )
    model.norm = nn.LayerNorm(d_model)
    model.head = nn.Linear(d_model, vocab_size)


def _logits(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    x = model.token_embedding(tokens) + model.positions[: tokens.shape[-1]]  # (B, T, D)
    for block in model.blocks:
        x = block(x, mask)
    return model.head(model.norm(x))  # (B, T, V)


class CausalLM(nn.Module):
    """A decoder-only (GPT-style) language model: position t reads tokens 0..t only.

    ``CausalLM(vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0)``;
    ``forward(tokens)``: tokens (B, T) int64 or int32 (a non-contiguous view too) with T <= max_len
    -> logits (B, T, V), where ``logits[:, t]`` scores the token that comes *after* position t; tokens
    is left unchanged, and so are the parameters and buffers (the position table too), in eval() and
    train() mode; backward reaches every parameter. Submodules, dropout and gradients as described above
    the class.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        max_len: int,
        dropout: float = 0.0,
    ):
        _build(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return _logits(self, tokens, causal_mask(tokens.shape[-1]).to(tokens.device))


class MaskedLM(nn.Module):
    """An encoder-only (BERT-style) masked language model: every position reads the whole
    sequence, so ``logits[:, t]`` scores the token *at* position t given both sides.

    ``MaskedLM(vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout=0.0)``;
    ``forward(tokens)``: tokens (B, T) int64 or int32 (a non-contiguous view too) with T <= max_len
    -> logits (B, T, V); tokens, the parameters and the buffers are left unchanged, in eval() and
    train() mode; backward reaches every parameter. Submodules, dropout and gradients as described
    above :class:`CausalLM`.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        max_len: int,
        dropout: float = 0.0,
    ):
        _build(self, vocab_size, d_model, num_heads, d_ff, num_layers, max_len, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return _logits(self, tokens, None)


# ---------------------------------------------------------------------------------------
# For the grader: the stack's logits from plain data (a state dict and the constructor's
# arguments), which the learner's kit can record, and the same with one thing changed, which
# names a learner's mistake when their logits match it.


def parameter_shapes(vocab_size, d_model, num_heads, d_ff, num_layers, max_len) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the models' state dict, in its order (the position table is a buffer, not in it)."""
    model = CausalLM(vocab_size, d_model, num_heads, d_ff, num_layers, max_len)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def stack_logits(
    weights: dict,
    tokens: torch.Tensor,
    config: dict,
    causal: bool,
    *,
    norm_first: bool = True,
    final_norm: bool = True,
    rows: str = "first",
    embedding_scale: float = 1.0,
    blocks: bool = True,
) -> torch.Tensor:
    """Logits (B, T, V), float64 and in eval() mode, of the stack built with ``config`` (the models'
    arguments) holding ``weights`` (a state dict, see :func:`parameter_shapes`) for tokens (B, T);
    ``causal`` picks the mask (CausalLM's or MaskedLM's). The keywords change one thing: the blocks'
    norm placement, the final LayerNorm, which rows of the position table T tokens get ("first",
    "last" or "none"), a factor on the token embeddings, and whether the blocks run at all
    (blocks=False is what dropout=1.0 in train() mode leaves: every block returns its input)."""
    model = CausalLM(**config).double().eval()
    model.load_state_dict({key: value.double() for key, value in weights.items()})
    length = tokens.shape[-1]
    table = model.positions
    positions = {"first": table[:length], "last": table[len(table) - length :], "none": 0.0}[rows]
    mask = causal_mask(length) if causal else None
    with torch.no_grad():
        x = model.token_embedding(tokens) * embedding_scale + positions
        for block in model.blocks if blocks else ():
            block.norm_first = norm_first
            x = block(x, mask)
        return model.head(model.norm(x) if final_norm else x)


def stack_gradients(
    weights: dict, tokens: torch.Tensor, config: dict, causal: bool, grad_output: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{name: gradient}`` (float64, the names and order of :func:`parameter_shapes`) of the stack built
    with ``config`` holding ``weights``, when its logits for ``tokens`` (B, T) are back-propagated with
    ``grad_output`` (B, T, V): the gradients one training step computes, in eval() mode (which is train()
    mode with dropout=0.0); ``causal`` picks the model (CausalLM's mask or MaskedLM's none)."""
    model = (CausalLM if causal else MaskedLM)(**config).double().eval()
    model.load_state_dict({key: value.double() for key, value in weights.items()})
    model(tokens).backward(grad_output.double())
    return {name: parameter.grad for name, parameter in model.named_parameters()}
