"""Chapter 5 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

The chapter's setup cell imports math, torch, ``torch.nn.functional as F``, ``nn`` and chapter 3's
``MultiHeadAttention``; a ``TransformerBlock`` answer brings its own ``FeedForward`` (in the
released notebook that cell is still the stub)."""

from corpus import alternative, bug

FEED_FORWARD = """
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(self.act(self.linear1(x))))

"""


def block(body: str) -> str:
    """A TransformerBlock answer cell: a correct FeedForward, then the block."""
    return FEED_FORWARD + body


BLOCK_INIT = """
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
"""

ENTRIES = [
    # --- layer_norm ---------------------------------------------------------------------------
    bug(
        "layer_norm",
        "torch.var's default, unbiased variance",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True)
            return (x - mean) / torch.sqrt(var + eps) * weight + bias
    """,
        fails=("matches_f_layer_norm",),
        says="the variance is unbiased",
    ),
    bug(
        "layer_norm",
        "eps added to the standard deviation",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(dim=-1, keepdim=True)
            std = x.std(dim=-1, keepdim=True, unbiased=False)
            return (x - mean) / (std + eps) * weight + bias
    """,
        fails=("rows_of_nearly_equal_values",),
        says="eps is added to the standard deviation",
    ),
    bug(
        "layer_norm",
        "centres the caller's tensor in place",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            x -= x.mean(dim=-1, keepdim=True)
            var = (x * x).mean(dim=-1, keepdim=True)
            return x / torch.sqrt(var + eps) * weight + bias
    """,
        fails=("matches_f_layer_norm",),
        says="changed its argument 1 in place",
    ),
    bug(
        "layer_norm",
        "the eps argument is ignored",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1, keepdim=True)
            var = ((x - mean) ** 2).mean(-1, keepdim=True)
            return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias
    """,
        fails=("uses_the_eps_argument",),
        says="the eps argument is ignored",
    ),
    bug(
        "layer_norm",
        "RMSNorm instead of LayerNorm",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight + bias
    """,
        fails=("matches_f_layer_norm",),
        says="that is RMSNorm",
    ),
    bug(
        "layer_norm",
        "returns its input: points without work",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            return x
    """,
        fails=("matches_f_layer_norm", "rows_of_nearly_equal_values", "uses_the_eps_argument"),
        says="differs from the expected value",
    ),
    alternative(
        "layer_norm",
        "var_mean in float64",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            var, mean = torch.var_mean(x.double(), dim=-1, unbiased=False, keepdim=True)
            normalized = (x.double() - mean) * torch.rsqrt(var + eps)
            return (normalized * weight.double() + bias.double()).to(x.dtype)
    """,
    ),
    alternative(
        "layer_norm",
        "einsum statistics, in place on its own copy",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            d = x.shape[-1]
            centered = x.clone()
            centered -= torch.einsum("...d->...", x)[..., None] / d
            var = torch.einsum("...d,...d->...", centered, centered)[..., None] / d
            return torch.addcmul(bias, centered / (var + eps).sqrt(), weight)
    """,
    ),
    # --- FeedForward --------------------------------------------------------------------------
    bug(
        "FeedForward",
        "dropout on the output of linear2",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.dropout(self.linear2(self.activation(self.linear1(x))))
    """,
        fails=("dropout_acts_on_the_hidden_activation", "dropout_rescales_the_kept_hidden_units"),
        says="the output of linear2 is dropped",
    ),
    bug(
        "FeedForward",
        "dropout on the input",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                h = self.linear1(self.dropout(x))
                h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
                return self.linear2(h)
    """,
        fails=("dropout_acts_on_the_hidden_activation",),
        says="the input x is dropped",
    ),
    bug(
        "FeedForward",
        "dropout before the activation",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = F.gelu if activation == "gelu" else F.relu
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.linear2(self.act(self.dropout(self.linear1(x))))
    """,
        fails=("dropout_rescales_the_kept_hidden_units",),
        says="dropout acts before the activation",
    ),
    bug(
        "FeedForward",
        "hand-made dropout without the 1 / (1 - p) scale",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation, self.p = activation, dropout

            def forward(self, x):
                h = self.linear1(x)
                h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
                if self.training:
                    h = h * (torch.rand_like(h) >= self.p)
                return self.linear2(h)
    """,
        fails=("dropout_rescales_the_kept_hidden_units",),
        says="not scaled by 1 / (1 - p)",
    ),
    bug(
        "FeedForward",
        "dropout rate hard-coded to 0.1",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.dropout = nn.Dropout(0.1)

            def forward(self, x):
                return self.linear2(self.dropout(self.act(self.linear1(x))))
    """,
        fails=("dropout_acts_on_the_hidden_activation",),
        says="in train() mode",
    ),
    bug(
        "FeedForward",
        "the residual connection inside the FFN",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return x + self.linear2(self.dropout(self.act(self.linear1(x))))
    """,
        fails=("relu_network_matches",),
        says="the residual connection belongs to TransformerBlock",
    ),
    bug(
        "FeedForward",
        "identity: points without work",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)

            def forward(self, x):
                return x
    """,
        fails=("relu_network_matches", "gelu_network_matches"),
        says="differs from the expected value",
    ),
    alternative(
        "FeedForward",
        "F.dropout with self.training, activation from a dict",
        """
        ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act, self.p = ACTIVATIONS[activation], dropout

            def forward(self, x):
                hidden = F.dropout(self.act(self.linear1(x)), p=self.p, training=self.training)
                return self.linear2(hidden)
    """,
    ),
    alternative(
        "FeedForward",
        "float64 matmuls with the Linear weights, cast back",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.gelu = activation == "gelu"
                self.drop = nn.Dropout(p=dropout)

            def forward(self, x):
                h = x.double() @ self.linear1.weight.double().T + self.linear1.bias.double()
                h = F.gelu(h) if self.gelu else h.clamp(min=0)
                h = self.drop(h)
                out = h @ self.linear2.weight.double().T + self.linear2.bias.double()
                return out.to(x.dtype)
    """,
    ),
    # --- TransformerBlock ---------------------------------------------------------------------
    bug(
        "TransformerBlock",
        "norm_first ignored: always Pre-LN",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        h = self.norm1(x)
        x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
        return x + self.dropout(self.ffn(self.norm2(x)))
"""
        ),
        fails=("post_ln_matches_pytorch",),
        says="this is Pre-LN",
    ),
    bug(
        "TransformerBlock",
        "Post-LN with dropout after the LayerNorm (on the residual stream)",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.dropout(self.norm1(x + self.attn(x, x, x, mask=mask)[0]))
        return self.dropout(self.norm2(x + self.ffn(x)))
"""
        ),
        fails=("dropout_on_each_sublayer_output",),
        says="the residual stream itself is dropped",
    ),
    bug(
        "TransformerBlock",
        "dropout only inside the FFN, never on the sublayer outputs",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.attn(h, h, h, mask=mask)[0]
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attn(x, x, x, mask=mask)[0])
        return self.norm2(x + self.ffn(x))
"""
        ),
        fails=("dropout_on_each_sublayer_output",),
        says="neither sublayer's output is dropped",
    ),
    bug(
        "TransformerBlock",
        "dropout not passed down to the FFN",
        block("""
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, x, x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""),
        fails=("dropout_reaches_the_feed_forward_network",),
        says="pass the block's dropout to FeedForward",
    ),
    bug(
        "TransformerBlock",
        "residual added in place to the caller's x",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x += self.dropout(self.attn(h, h, h, mask=mask)[0])
            x += self.dropout(self.ffn(self.norm2(x)))
            return x
        x = self.norm1(x + self.dropout(self.attn(x, x, x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("pre_ln_matches_pytorch",),
        says="changed its argument 1 in place",
    ),
    bug(
        "TransformerBlock",
        "the mask is not passed to attention",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, h)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, x, x)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("causal_mask_in_both_orders",),
        says="the mask is ignored",
    ),
    bug(
        "TransformerBlock",
        "norm1 and norm2 swapped in Pre-LN",
        block(
            BLOCK_INIT
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm2(x)
            x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm1(x)))
        x = self.norm1(x + self.dropout(self.attn(x, x, x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("pre_ln_matches_pytorch",),
        says="norm1 and norm2 are swapped",
    ),
    alternative(
        "TransformerBlock",
        "one sublayer helper with F.dropout",
        block("""
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.pre_ln, self.p = norm_first, dropout
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def _sublayer(self, x, norm, fn):
        if self.pre_ln:
            return x + F.dropout(fn(norm(x)), self.p, self.training)
        return norm(x + F.dropout(fn(x), self.p, self.training))

    def forward(self, x, mask=None):
        x = self._sublayer(x, self.norm1, lambda h: self.attn(h, h, h, mask)[0])
        return self._sublayer(x, self.norm2, self.ffn)
"""),
    ),
    alternative(
        "TransformerBlock",
        "two dropout modules, torch.add, a Post-LN method and a Pre-LN method",
        block("""
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.drop_attn, self.drop_ffn = nn.Dropout(dropout), nn.Dropout(dropout)

    def _attend(self, h, mask):
        out, _ = self.attn(query=h, key=h, value=h, mask=mask)
        return self.drop_attn(out)

    def _pre(self, x, mask):
        x = torch.add(x, self._attend(self.norm1(x), mask))
        return torch.add(x, self.drop_ffn(self.ffn(self.norm2(x))))

    def _post(self, x, mask):
        x = self.norm1(torch.add(x, self._attend(x, mask)))
        return self.norm2(torch.add(x, self.drop_ffn(self.ffn(x))))

    def forward(self, x, mask=None):
        return self._pre(x, mask) if self.norm_first else self._post(x, mask)
"""),
    ),
    # --- count_parameters ---------------------------------------------------------------------
    bug(
        "count_parameters",
        "a float, from math.pow",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            b = 1 if biases else 0
            block = 4 * math.pow(d_model, 2) + 4 * d_model * b + 2 * d_model * d_ff + (d_ff + d_model) * b
            block += 2 * d_model * (1 + b)
            total = (vocab_size + n_ctx) * d_model + n_layers * block + d_model * (1 + b)
            return total if tied_embeddings else total + vocab_size * d_model
    """,
        fails=("returns_an_int",),
        says="returns a float",
    ),
    bug(
        "count_parameters",
        "a tensor, summed with torch",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            b = int(biases)
            parts = torch.tensor([vocab_size * d_model, n_ctx * d_model,
                                  n_layers * (4 * d_model * d_model + 4 * d_model * b),
                                  n_layers * (2 * d_model * d_ff + (d_ff + d_model) * b),
                                  (2 * n_layers + 1) * d_model * (1 + b),
                                  0 if tied_embeddings else vocab_size * d_model])
            return parts.sum()
    """,
        fails=("returns_an_int",),
        says="returns a torch.Tensor",
    ),
    bug(
        "count_parameters",
        "the final LayerNorm forgotten",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            b = int(biases)
            per_block = 4 * d_model * d_model + 2 * d_model * d_ff + b * (5 * d_model + d_ff) + 2 * d_model * (1 + b)
            head = 0 if tied_embeddings else vocab_size * d_model
            return vocab_size * d_model + n_ctx * d_model + n_layers * per_block + head
    """,
        fails=("default_gpt_configurations",),
        says="the final LayerNorm",
    ),
    bug(
        "count_parameters",
        "the tied output projection counted",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            b = int(biases)
            per_block = 4 * d_model * d_model + 2 * d_model * d_ff + b * (5 * d_model + d_ff) + 2 * d_model * (1 + b)
            return 2 * vocab_size * d_model + n_ctx * d_model + n_layers * per_block + d_model * (1 + b)
    """,
        fails=("default_gpt_configurations",),
        says="counted although it is tied",
    ),
    bug(
        "count_parameters",
        "GPT-2 small's size hard-coded: points without work",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            return 124_439_808
    """,
        fails=("default_gpt_configurations", "explicit_d_ff", "without_biases", "untied_embeddings"),
        says="count each part of the model",
    ),
    alternative(
        "count_parameters",
        "the model built on the meta device, counted by PyTorch",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            with torch.device("meta"):
                parts = [nn.Embedding(vocab_size, d_model), nn.Embedding(n_ctx, d_model),
                         nn.LayerNorm(d_model, bias=biases)]
                for _ in range(n_layers):
                    parts += [nn.Linear(d_model, d_model, bias=biases) for _ in range(4)]
                    parts += [nn.Linear(d_model, d_ff, bias=biases), nn.Linear(d_ff, d_model, bias=biases)]
                    parts += [nn.LayerNorm(d_model, bias=biases) for _ in range(2)]
                if not tied_embeddings:
                    parts.append(nn.Linear(d_model, vocab_size, bias=False))
            return sum(p.numel() for part in parts for p in part.parameters())
    """,
    ),
    alternative(
        "count_parameters",
        "the 12 D^2 + 13 D form, integer arithmetic",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            extra_ff = 0 if d_ff is None else 2 * d_model * (d_ff - 4 * d_model) + (d_ff - 4 * d_model) * biases
            per_block = 12 * d_model ** 2 + (13 if biases else 2) * d_model + extra_ff
            embeddings = (vocab_size + n_ctx) * d_model
            final_norm = 2 * d_model if biases else d_model
            head = 0 if tied_embeddings else vocab_size * d_model
            return int(embeddings + n_layers * per_block + final_norm + head)
    """,
    ),
]
