"""Chapter 5: the transformer block around attention.

Shapes: ``D`` = ``d_model`` (the width of every token vector), ``N`` tokens per sequence,
``B`` sequences per batch. Inputs of the block are (B, N, D). Masks are boolean and True
where a query MAY attend to a key, broadcastable to (B, H, N, N), as in chapters 2 and 3.
Methods call ``nn.Module.__init__(self)`` rather than ``super().__init__()`` so that a
learner's skeleton class can delegate to them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from solutions.multi_head_attention import MultiHeadAttention

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}  # F.gelu is the exact, erf-based GELU


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer normalization (Ba, Kiros and Hinton, 2016) over the last dimension.

    x: (..., D); weight, bias: (D,). Each row x (a vector of D features) becomes
    ``(x - mean) / sqrt(var + eps) * weight + bias`` with the mean and the *biased* variance
    (divide by D, not D - 1) of that row. ``eps`` sits inside the square root, as in
    ``torch.nn.functional.layer_norm``: it bounds the factor 1 / sqrt(var + eps) by
    1 / sqrt(eps) for rows of nearly equal values. Returns a tensor of the shape and dtype of
    x, differentiable with respect to x, weight and bias; x, weight and bias are left unchanged.
    Graded on its values and gradients; basic tensor operations, not torch's own normalizations,
    is advice (0 points).
    """
    mean = x.mean(dim=-1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``linear2(dropout(act(linear1(x))))``.

    ``linear1``: D -> d_ff, ``linear2``: d_ff -> D, both with biases; ``activation`` is
    "relu" (Vaswani et al., 2017) or "gelu" (the exact GELU, as GPT and BERT use). Dropout
    acts on the hidden activation only (after the activation, before linear2), where
    ``torch.nn.TransformerEncoderLayer`` puts it: nowhere else. forward: x (..., D) -> (..., D);
    every position is transformed on its own; x is left unchanged. forward only reads the
    parameters, and backward works in train() mode: nothing autograd saved is changed in place
    (an in-place dropout after ReLU would change ReLU's saved output).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0):
        nn.Module.__init__(self)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))


class TransformerBlock(nn.Module):
    """One encoder-style block: self-attention and a feed-forward network, each wrapped in a
    residual connection and a LayerNorm.

    ``norm_first=False`` is Post-LN, the original paper's order (Vaswani et al., 2017)::

        x = norm1(x + dropout(attn(x)));   x = norm2(x + dropout(ffn(x)))

    ``norm_first=True`` is Pre-LN (GPT-2 onward; Xiong et al., 2020)::

        x = x + dropout(attn(norm1(x)));   x = x + dropout(ffn(norm2(x)))

    Dropout acts on each sublayer's output before it is added to the residual stream (the
    ``dropout(...)`` above), never on the stream itself (x, or the sum), and the block passes
    its ``dropout`` down to ``ffn``, which applies it to its hidden activation. Submodules:
    ``attn`` (chapter 3's ``MultiHeadAttention``), ``ffn`` (``FeedForward``), ``norm1``,
    ``norm2`` (``nn.LayerNorm``, eps 1e-5). With dropout 0 the output equals that of
    ``nn.TransformerEncoderLayer(..., norm_first=norm_first, batch_first=True)`` given the same
    weights. forward: x (B, N, D), mask bool broadcastable to (B, H, N, N) (a causal (N, N) mask,
    a padding mask (B, 1, 1, N)), True where a query may attend -> (B, N, D); x and mask are left
    unchanged. forward only reads the parameters and keeps nothing from one call to the next;
    backward works in train() mode (no in-place change of a tensor autograd saved, such as
    ``h += ...`` on the residual stream).
    """

    def __init__(
        self, d_model: int, num_heads: int, d_ff: int, norm_first: bool, dropout: float = 0.0, activation: str = "relu"
    ):
        nn.Module.__init__(self)
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, x, x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


def count_parameters(
    n_layers: int,
    d_model: int,
    vocab_size: int,
    n_ctx: int,
    d_ff: int | None = None,
    biases: bool = True,
    tied_embeddings: bool = True,
) -> int:
    """Trainable parameters of a GPT-style decoder (Radford et al., 2019; Brown et al., 2020).

    The model: token embedding (V x D), learned position embedding (n_ctx x D), ``n_layers``
    Pre-LN blocks, a final LayerNorm, and an output projection D -> V without bias that is
    the token embedding itself when ``tied_embeddings`` (then it adds nothing). With
    L = n_layers, D = d_model, F = d_ff (default 4 D), V = vocab_size, b = 1 if biases else 0::

        per block:  attention   4 D^2 + 4 D b         (w_q, w_k, w_v, w_o)
                    FFN         2 D F + (F + D) b      (linear1, linear2)
                    LayerNorms  2 (D + D b)            (norm1, norm2: gain, and bias if b)
        total = V D + n_ctx D + L (4 D^2 + 2 D F + (5 D + F) b + 2 D (1 + b))
                + D (1 + b)  [final LayerNorm]  + (0 if tied else V D)

    ``biases=False`` drops the bias of every Linear and of every LayerNorm (as nanoGPT's
    ``bias=False``); the LayerNorm gains stay. For F = 4 D with biases, a block has
    12 D^2 + 13 D parameters. Returns an int (a count: not a float, a tensor or a bool).
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    b = int(biases)
    norm = d_model * (1 + b)
    block = 4 * d_model**2 + 4 * d_model * b + 2 * d_model * d_ff + (d_ff + d_model) * b + 2 * norm
    embeddings = vocab_size * d_model + n_ctx * d_model
    head = 0 if tied_embeddings else vocab_size * d_model
    return embeddings + n_layers * block + norm + head
