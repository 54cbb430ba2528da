"""Chapter 5 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

The chapter's setup cell imports math, torch, ``torch.nn.functional as F``, ``nn`` and chapter 3's
``MultiHeadAttention``; a ``TransformerBlock`` answer brings its own ``FeedForward`` (in the
released notebook that cell is still the stub)."""

from corpus import advised, alternative, bug

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

SELF_ATTENTION = """
    def sa(self, x, mask):
        return self.attn(x, x, x, mask=mask)[0]
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
    bug(
        "layer_norm",
        "keepdim missing (square inputs broadcast)",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1)
            var = ((x - mean) ** 2).mean(-1)
            return (x - mean) / (var + eps).sqrt() * weight + bias
    """,
        fails=("matches_f_layer_norm",),
    ),
    bug(
        "layer_norm",
        "E[x^2] - E[x]^2 in float32 (cancellation)",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1, keepdim=True)
            var = (x * x).mean(-1, keepdim=True) - mean * mean
            return (x - mean) / (var + eps).sqrt() * weight + bias
    """,
        fails=("rows_of_nearly_equal_values",),
    ),
    bug(
        "layer_norm",
        "statistics detached",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1, keepdim=True).detach()
            var = x.var(-1, unbiased=False, keepdim=True).detach()
            return (x - mean) / (var + eps).sqrt() * weight + bias
    """,
        fails=("gradients_match_f_layer_norm",),
    ),
    alternative(
        "layer_norm",
        "variance as torch.std(unbiased=False) ** 2",
        """
        import torch

        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1, keepdim=True)
            std = x.std(-1, unbiased=False, keepdim=True)
            return (x - mean) / torch.sqrt(std ** 2 + eps) * weight + bias
    """,
    ),
    bug(
        "layer_norm",
        "a hand-made std, sqrt(var), squared back (NaN gradient on a constant row)",
        """
        import torch

        def layer_norm(x, weight, bias, eps=1e-5):
            centered = x - x.mean(-1, keepdim=True)
            std = centered.pow(2).mean(-1, keepdim=True).sqrt()
            return centered / torch.sqrt(std * std + eps) * weight + bias
    """,
        fails=("gradients_match_f_layer_norm",),
        says="contains NaN or inf for a row of equal values",
    ),
    bug(
        "layer_norm",
        "float64 input computed in float32",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            x32 = x.float()
            mean = x32.mean(-1, keepdim=True)
            var = ((x32 - mean) ** 2).mean(-1, keepdim=True)
            return ((x32 - mean) / (var + eps).sqrt() * weight.float() + bias.float())
    """,
        fails=("matches_f_layer_norm",),
        says="it should keep the dtype of x",
    ),
    bug(
        "layer_norm",
        "weight and bias swapped",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean(-1, keepdim=True)
            var = ((x - mean) ** 2).mean(-1, keepdim=True)
            return (x - mean) / (var + eps).sqrt() * bias + weight
    """,
        fails=("matches_f_layer_norm",),
        says="weight and bias are swapped",
    ),
    advised(
        "layer_norm",
        "torch.layer_norm (forbidden library call)",
        """
        import torch

        def layer_norm(x, weight, bias, eps=1e-5):
            return torch.layer_norm(x, x.shape[-1:], weight, bias, eps)
    """,
        advice=("no_library_norm",),
        says="calls a normalization of PyTorch",
    ),
    bug(
        "layer_norm",
        "nn.LayerNorm module with copied parameters (forbidden)",
        """
        import torch
        from torch import nn

        def layer_norm(x, weight, bias, eps=1e-5):
            norm = nn.LayerNorm(x.shape[-1], eps=eps).to(x.dtype)
            with torch.no_grad():
                norm.weight.copy_(weight)
                norm.bias.copy_(bias)
            return norm(x)
    """,
        fails=("gradients_match_f_layer_norm",),
        says="no gradient reaches weight",
    ),
    bug(
        "layer_norm",
        "mean over the last two dimensions",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            mean = x.mean((-2, -1), keepdim=True)
            var = ((x - mean) ** 2).mean((-2, -1), keepdim=True)
            return (x - mean) / (var + eps).sqrt() * weight + bias
    """,
        fails=("matches_f_layer_norm",),
    ),
    alternative(
        "layer_norm",
        "var_mean and rsqrt",
        """
        import torch

        def layer_norm(x, weight, bias, eps=1e-5):
            var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
            return (x - mean) * torch.rsqrt(var + eps) * weight + bias
    """,
    ),
    alternative(
        "layer_norm",
        "float64 internals, cast back",
        """
        def layer_norm(x, weight, bias, eps=1e-5):
            h = x.double()
            centered = h - h.mean(-1, keepdim=True)
            var = centered.square().mean(-1, keepdim=True)
            return (centered / (var + eps).sqrt() * weight.double() + bias.double()).to(x.dtype)
    """,
    ),
    alternative(
        "layer_norm",
        "means as matrix products with a ones vector",
        """
        import torch

        def layer_norm(x, weight, bias, eps=1e-5):
            d = x.shape[-1]
            ones = torch.ones(d, 1, dtype=x.dtype) / d
            centered = x - x @ ones
            var = (centered * centered) @ ones
            return torch.addcmul(bias, centered / torch.sqrt(var + eps), weight)
    """,
    ),
    bug(
        "layer_norm",
        "BERT's default eps, 1e-12",
        """
        def layer_norm(x, weight, bias, eps=1e-12):
            centered = x - x.mean(-1, keepdim=True)
            return centered / torch.sqrt(centered.pow(2).mean(-1, keepdim=True) + eps) * weight + bias
    """,
        fails=("rows_of_nearly_equal_values",),
        says="the default eps is 1e-5",
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
    bug(
        "FeedForward",
        "dropout on the hidden activation and the output",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.dropout(self.linear2(self.dropout(ACT[self.activation](self.linear1(x)))))
    """,
        fails=("dropout_acts_on_the_hidden_activation",),
        says="the output of linear2 is dropped",
    ),
    bug(
        "FeedForward",
        "F.dropout without the training flag (active in eval)",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.linear2(F.dropout(ACT[self.activation](self.linear1(x)), self.dropout.p))
    """,
        fails=("dropout_only_in_training",),
        says="must be off after model.eval()",
    ),
    bug(
        "FeedForward",
        "tanh-approximate GELU",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                h = self.linear1(x)
                h = F.gelu(h, approximate="tanh") if self.activation == "gelu" else F.relu(h)
                return self.linear2(self.dropout(h))
    """,
        fails=("gelu_network_matches",),
        says="tanh approximation",
    ),
    bug(
        "FeedForward",
        "activation also on the output",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                act = ACT[self.activation]
                return act(self.linear2(self.dropout(act(self.linear1(x)))))
    """,
        fails=("relu_network_matches",),
        says="also applied after linear2",
    ),
    bug(
        "FeedForward",
        "a fresh nn.Dropout in forward (always training)",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.linear2(nn.Dropout(self.dropout.p)(ACT[self.activation](self.linear1(x))))
    """,
        fails=("dropout_only_in_training",),
        says="must be off after model.eval()",
    ),
    bug(
        "FeedForward",
        "dropout argument ignored",
        """
        ACT = {"relu": F.relu, "gelu": F.gelu}

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.linear2(ACT[self.activation](self.linear1(x)))
    """,
        fails=("dropout_acts_on_the_hidden_activation",),
        says="nothing was dropped",
    ),
    bug(
        "FeedForward",
        "linear layers without bias",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff, bias=False)
                self.linear2 = nn.Linear(d_ff, d_model, bias=False)
                self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                return self.linear2(self.dropout(self.act(self.linear1(x))))
    """,
        fails=("has_linear1_and_linear2",),
        says="has no parameter linear1.bias",
    ),
    alternative(
        "FeedForward",
        "Sequential that shares the named linears",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                act = {"relu": nn.ReLU(), "gelu": nn.GELU()}[activation]
                self.net = nn.Sequential(self.linear1, act, nn.Dropout(dropout), self.linear2)

            def forward(self, x):
                return self.net(x)
    """,
    ),
    alternative(
        "FeedForward",
        "functional dropout with self.training, weights used directly",
        """
        import torch

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.p = dropout
                self.gelu = activation == "gelu"

            def forward(self, x):
                h = torch.matmul(x, self.linear1.weight.t()) + self.linear1.bias
                h = F.gelu(h) if self.gelu else torch.clamp(h, min=0)
                h = F.dropout(h, self.p, self.training)
                return torch.addmm(self.linear2.bias, h.reshape(-1, h.shape[-1]),
                                   self.linear2.weight.t()).reshape(*x.shape[:-1], -1)
    """,
    ),
    alternative(
        "FeedForward",
        "exact GELU written with erf, einsum",
        """
        import math
        import torch

        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.drop = nn.Dropout(dropout)

            def forward(self, x):
                h = torch.einsum("...i,oi->...o", x, self.linear1.weight) + self.linear1.bias
                if self.activation == "gelu":
                    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
                else:
                    h = h * (h > 0)
                return self.linear2(self.drop(h))
    """,
    ),
    bug(
        "FeedForward",
        "in-place dropout after the ReLU",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = F.gelu if activation == "gelu" else F.relu
                self.p = dropout

            def forward(self, x):
                h = self.act(self.linear1(x))
                F.dropout(h, self.p, self.training, inplace=True)  # saves memory
                return self.linear2(h)
    """,
        fails=("backward_in_train_mode",),
        says="in-place operations",
    ),
    bug(
        "FeedForward",
        "nn.Dropout(inplace=True) in an nn.Sequential after nn.ReLU",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.hidden = nn.Sequential(
                    nn.GELU() if activation == "gelu" else nn.ReLU(), nn.Dropout(dropout, inplace=True)
                )

            def forward(self, x):
                return self.linear2(self.hidden(self.linear1(x)))
    """,
        fails=("backward_in_train_mode",),
        says="modified by an inplace operation",
    ),
    bug(
        "FeedForward",
        "the hidden activation detached to keep it for a plot",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.drop = nn.Dropout(dropout)

            def forward(self, x):
                self.hidden = self.act(self.linear1(x)).detach()
                return self.linear2(self.drop(self.hidden))
    """,
        fails=("backward_in_train_mode",),
        says="no gradient reaches x",
    ),
    bug(
        "FeedForward",
        "the hidden activation registered as a buffer in forward",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
                self.drop = nn.Dropout(dropout)

            def forward(self, x):
                h = self.act(self.linear1(x))
                self.register_buffer("last_hidden", h.detach().mean(0))  # for inspecting the units later
                return self.linear2(self.drop(h))
    """,
        fails=("backward_in_train_mode",),
        says="changed the module's parameters or buffers",
    ),
    bug(
        "FeedForward",
        "max-norm renormalization of linear1's rows inside forward",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.act = F.gelu if activation == "gelu" else F.relu
                self.drop = nn.Dropout(dropout)

            def forward(self, x):
                if self.training:  # keep the hidden units' weights bounded while training
                    with torch.no_grad():
                        self.linear1.weight.copy_(torch.renorm(self.linear1.weight, 2, 0, 0.5))
                return self.linear2(self.drop(self.act(self.linear1(x))))
    """,
        fails=("backward_in_train_mode",),
        says="linear1.weight",
    ),
    alternative(
        "FeedForward",
        "in-place ReLU on linear1's output (nothing autograd saved is changed)",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.activation = activation
                self.dropout = nn.Dropout(dropout)

            def forward(self, x):
                h = self.linear1(x)
                h = F.relu(h, inplace=True) if self.activation == "relu" else F.gelu(h)
                return self.linear2(self.dropout(h))
    """,
    ),
    alternative(
        "FeedForward",
        "in-place dropout after GELU (GELU's backward reads its input, not its output)",
        """
        class FeedForward(nn.Module):
            def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
                super().__init__()
                self.linear1 = nn.Linear(d_model, d_ff)
                self.linear2 = nn.Linear(d_ff, d_model)
                self.gelu = activation == "gelu"
                self.dropout = nn.Dropout(dropout, inplace=self.gelu)

            def forward(self, x):
                h = self.linear1(x)
                h = F.gelu(h) if self.gelu else F.relu(h)
                return self.linear2(self.dropout(h))
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
    bug(
        "TransformerBlock",
        "parallel attention and FFN (GPT-J) in Pre-LN",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            return x + self.dropout(self.sa(self.norm1(x), mask)) + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("pre_ln_matches_pytorch",),
        says="the feed-forward network reads the block's input",
    ),
    bug(
        "TransformerBlock",
        "Pre-LN residual taken from the normalized stream",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = h + self.dropout(self.sa(h, mask))
            h = self.norm2(x)
            return h + self.dropout(self.ffn(h))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("pre_ln_matches_pytorch",),
        says="the residual path carries the normalized x",
    ),
    bug(
        "TransformerBlock",
        "dropout on the residual sum",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = self.dropout(x + self.sa(self.norm1(x), mask))
            return self.dropout(x + self.ffn(self.norm2(x)))
        x = self.norm1(self.dropout(x + self.sa(x, mask)))
        return self.norm2(self.dropout(x + self.ffn(x)))
"""
        ),
        fails=("dropout_on_each_sublayer_output",),
        says="the residual stream itself is dropped",
    ),
    bug(
        "TransformerBlock",
        "activation not passed to the FFN",
        block(
            """
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, h, mask=mask)[0])
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, x, x, mask=mask)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("gelu_activation",),
        says="pass the block's activation to FeedForward",
    ),
    bug(
        "TransformerBlock",
        "Post-LN FFN reads the un-normalized sum",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        h = x + self.dropout(self.sa(x, mask))
        x = self.norm1(h)
        return self.norm2(x + self.dropout(self.ffn(h)))
"""
        ),
        fails=("post_ln_matches_pytorch",),
        says="reads x + attn(x) before norm1",
    ),
    bug(
        "TransformerBlock",
        "mask inverted (PyTorch's convention)",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        mask = None if mask is None else ~mask
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("causal_mask_in_both_orders",),
        says="is the mask inverted?",
    ),
    bug(
        "TransformerBlock",
        "Pre-LN block ends with an extra LayerNorm",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            x = x + self.dropout(self.ffn(self.norm2(x)))
            return F.layer_norm(x, x.shape[-1:])
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("pre_ln_matches_pytorch",),
    ),
    bug(
        "TransformerBlock",
        "F.dropout on sublayer outputs without the training flag",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        p = self.dropout.p
        if self.norm_first:
            x = x + F.dropout(self.sa(self.norm1(x), mask), p)
            return x + F.dropout(self.ffn(self.norm2(x)), p)
        x = self.norm1(x + F.dropout(self.sa(x, mask), p))
        return self.norm2(x + F.dropout(self.ffn(x), p))
"""
        ),
        fails=("dropout_only_in_training",),
        says="must be off after model.eval()",
    ),
    bug(
        "TransformerBlock",
        "dropout on the attention sublayer only",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.ffn(x))
"""
        ),
        fails=("dropout_on_each_sublayer_output",),
        says="the feed-forward sublayer's output is not dropped",
    ),
    bug(
        "TransformerBlock",
        "norm_first read the other way round",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if not self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("post_ln_matches_pytorch", "pre_ln_matches_pytorch"),
        says="but norm_first=False asks for Post-LN",
    ),
    alternative(
        "TransformerBlock",
        "PyTorch-style _sa_block/_ff_block with two dropout modules",
        block(
            """
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _sa_block(self, x, mask):
        return self.dropout1(self.attn(x, mask=mask)[0])

    def _ff_block(self, x):
        return self.dropout2(self.ffn(x))

    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), mask)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, mask))
            x = self.norm2(x + self._ff_block(x))
        return x
"""
        ),
    ),
    alternative(
        "TransformerBlock",
        "functional dropout with self.training and a sublayer helper",
        block(
            """
class TransformerBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, norm_first, dropout=0.0, activation="relu"):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.pre, self.p = norm_first, dropout

    def residual(self, x, sublayer, norm):
        if self.pre:
            return x + F.dropout(sublayer(norm(x)), self.p, self.training)
        return norm(x + F.dropout(sublayer(x), self.p, self.training))

    def forward(self, x, mask=None):
        x = self.residual(x, lambda h: self.attn(h, h, h, mask)[0], self.norm1)
        return self.residual(x, self.ffn, self.norm2)
"""
        ),
    ),
    alternative(
        "TransformerBlock",
        "norms in a ModuleList-free dict lookup, residual variable",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        residual = x
        if self.norm_first:
            out = self.sa(self.norm1(residual), mask)
            residual = residual + self.dropout(out)
            out = self.ffn(self.norm2(residual))
            return residual + self.dropout(out)
        residual = self.norm1(residual + self.dropout(self.sa(residual, mask)))
        return self.norm2(residual + self.dropout(self.ffn(residual)))
"""
        ),
    ),
    bug(
        "TransformerBlock",
        "in-place residual additions (h += ...)",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if self.norm_first:
            h = x + self.dropout(self.sa(self.norm1(x), mask))
            h += self.dropout(self.ffn(self.norm2(h)))
            return h
        h = self.norm1(x + self.dropout(self.sa(x, mask)))
        h += self.dropout(self.ffn(h))
        return self.norm2(h)
"""
        ),
        fails=("backward_in_train_mode",),
        says="in-place operations",
    ),
    bug(
        "TransformerBlock",
        "its FeedForward drops the ReLU's output in place",
        """
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(dropout, inplace=True)

    def forward(self, x):
        return self.linear2(self.dropout(self.act(self.linear1(x))))
"""
        + BLOCK_INIT
        + SELF_ATTENTION
        + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
""",
        fails=("backward_in_train_mode",),
        says="in-place operations",
    ),
    bug(
        "TransformerBlock",
        "its FeedForward keeps dropout on in eval() mode (F.dropout without training=)",
        """
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.p = dropout

    def forward(self, x):
        return self.linear2(F.dropout(self.act(self.linear1(x)), self.p))
"""
        + BLOCK_INIT
        + SELF_ATTENTION
        + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
""",
        fails=("dropout_only_in_training",),
        says="the block's ffn alone gives a different output at every call in eval() mode",
    ),
    bug(
        "TransformerBlock",
        "its FeedForward has no activation",
        """
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(self.linear1(x)))
"""
        + BLOCK_INIT
        + SELF_ATTENTION
        + """
    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
""",
        fails=("post_ln_matches_pytorch", "pre_ln_matches_pytorch"),
        says="the block's ffn alone, in eval() mode with the loaded weights, is wrong (your FeedForward",
    ),
    bug(
        "TransformerBlock",
        "the mask reshaped to (1, 1, N, N)",
        block(
            BLOCK_INIT
            + """
    def sa(self, x, mask):
        if mask is not None:
            mask = mask.reshape(1, 1, x.shape[1], x.shape[1])  # one mask for every batch row and head
        return self.attn(x, x, x, mask=mask)[0]

    def forward(self, x, mask=None):
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("padding_mask_and_repeated_calls",),
    ),
    bug(
        "TransformerBlock",
        "remembers the last mask it was given (None reuses it)",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        if mask is not None:
            self.last_mask = mask
        mask = getattr(self, "last_mask", None)
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("padding_mask_and_repeated_calls",),
    ),
    bug(
        "TransformerBlock",
        "the residual stream's mean kept in a buffer updated by forward",
        block(
            BLOCK_INIT
            + """
        self.register_buffer("stream_mean", torch.zeros(d_model))
"""
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        with torch.no_grad():  # a running statistic, for monitoring the residual stream
            self.stream_mean.mul_(0.9).add_(0.1 * x.mean(dim=(0, 1)))
        if self.norm_first:
            x = x + self.dropout(self.sa(self.norm1(x), mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.sa(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
"""
        ),
        fails=("padding_mask_and_repeated_calls", "backward_in_train_mode"),
        says="stream_mean",
    ),
    alternative(
        "TransformerBlock",
        "in-place dropout on each sublayer's output (a Linear's output is not saved)",
        block(
            BLOCK_INIT
            + SELF_ATTENTION
            + """
    def forward(self, x, mask=None):
        p, training = self.dropout.p, self.training
        if self.norm_first:
            x = x + F.dropout(self.sa(self.norm1(x), mask), p, training, inplace=True)
            return x + F.dropout(self.ffn(self.norm2(x)), p, training, inplace=True)
        x = self.norm1(x + F.dropout(self.sa(x, mask), p, training, inplace=True))
        return self.norm2(x + F.dropout(self.ffn(x), p, training, inplace=True))
"""
        ),
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
    bug(
        "count_parameters",
        "no position embedding",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="position embedding (n_ctx x d_model) is not counted",
    ),
    bug(
        "count_parameters",
        "tied flag inverted",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (V * D if tied_embeddings else 0)
    """,
        fails=("default_gpt_configurations", "untied_embeddings"),
        says="is a separate matrix and must be counted",
    ),
    bug(
        "count_parameters",
        "untied head counted with a bias",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D + V)
    """,
        fails=("untied_embeddings",),
        says="the output projection has no bias",
    ),
    bug(
        "count_parameters",
        "biases=False also drops the LayerNorm gains",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (2 * D) * b
            return V * D + n_ctx * D + L * block + 2 * D * b + (0 if tied_embeddings else V * D)
    """,
        fails=("without_biases",),
        says="the LayerNorm gains (weights) stay",
    ),
    bug(
        "count_parameters",
        "biases=False keeps the LayerNorm biases",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * 2 * D
            return V * D + n_ctx * D + L * block + 2 * D + (0 if tied_embeddings else V * D)
    """,
        fails=("without_biases",),
        says="must drop the LayerNorm biases too",
    ),
    bug(
        "count_parameters",
        "d_ff argument ignored (12 D^2 + 13 D per block)",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 12 * D * D + 9 * D * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("explicit_d_ff",),
        says="the d_ff argument is ignored",
    ),
    bug(
        "count_parameters",
        "FFN biases counted as 2 d_ff",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + 2 * F_ * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="linear2's bias has d_model entries",
    ),
    bug(
        "count_parameters",
        "attention biases for w_q, w_k, w_v only",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 3 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations", "explicit_d_ff"),
        says="four biases per block",
    ),
    bug(
        "count_parameters",
        "one LayerNorm per block",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="two LayerNorms, norm1 and norm2",
    ),
    bug(
        "count_parameters",
        "the 12 L D^2 approximation",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            return 12 * n_layers * d_model ** 2
    """,
        fails=("default_gpt_configurations",),
        says="only the 12 d_model^2 weights",
    ),
    bug(
        "count_parameters",
        "d_ff=None treated as d_model",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="d_ff=None must mean d_ff = 4 * d_model",
    ),
    bug(
        "count_parameters",
        "linear2's weight forgotten",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + n_ctx * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="one more layer adds",
    ),
    bug(
        "count_parameters",
        "position table counted with n_ctx + 1 rows",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            F_ = 4 * d_model if d_ff is None else d_ff
            D, L, V, b = d_model, n_layers, vocab_size, int(biases)
            block = 4 * D * D + 4 * D * b + 2 * D * F_ + (F_ + D) * b + 2 * (D + D * b)
            return V * D + (n_ctx + 1) * D + L * block + (D + D * b) + (0 if tied_embeddings else V * D)
    """,
        fails=("default_gpt_configurations",),
        says="outside the blocks",
    ),
    alternative(
        "count_parameters",
        "build the model on the meta device, count unique parameters",
        """
        import torch
        from torch import nn

        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            with torch.device("meta"):
                tokens = nn.Embedding(vocab_size, d_model)
                modules = [tokens, nn.Embedding(n_ctx, d_model), nn.LayerNorm(d_model, bias=biases)]
                for _ in range(n_layers):
                    modules += [nn.Linear(d_model, d_model, bias=biases) for _ in range(4)]
                    modules += [nn.Linear(d_model, d_ff, bias=biases), nn.Linear(d_ff, d_model, bias=biases)]
                    modules += [nn.LayerNorm(d_model, bias=biases), nn.LayerNorm(d_model, bias=biases)]
                head = nn.Linear(d_model, vocab_size, bias=False)
                if tied_embeddings:
                    head.weight = tokens.weight
                modules.append(head)
            unique = {id(p): p for m in modules for p in m.parameters()}
            return sum(p.numel() for p in unique.values())
    """,
    ),
    alternative(
        "count_parameters",
        "component dictionary",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            if d_ff is None:
                d_ff = 4 * d_model
            bias = 1 if biases else 0
            linear = lambda n_in, n_out: n_in * n_out + bias * n_out
            norm = d_model + bias * d_model
            block = {"attention": 4 * linear(d_model, d_model),
                     "ffn": linear(d_model, d_ff) + linear(d_ff, d_model),
                     "norms": 2 * norm}
            parts = {"tokens": vocab_size * d_model, "positions": n_ctx * d_model,
                     "blocks": n_layers * sum(block.values()), "final norm": norm,
                     "head": 0 if tied_embeddings else d_model * vocab_size}
            return sum(parts.values())
    """,
    ),
    alternative(
        "count_parameters",
        "bool arithmetic and integer expansion",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            f = d_ff if d_ff is not None else d_model * 4
            per_block = d_model * (4 * d_model + 2 * f) + biases * (5 * d_model + f) + 2 * d_model * (1 + biases)
            total = d_model * (vocab_size * (2 - tied_embeddings) + n_ctx) + n_layers * per_block
            return int(total + d_model * (1 + biases))
    """,
    ),
    bug(
        "count_parameters",
        "a meta-device model counted through state_dict(): a causal-mask buffer, the tied matrix twice",
        """
        def count_parameters(n_layers, d_model, vocab_size, n_ctx, d_ff=None, biases=True, tied_embeddings=True):
            d_ff = d_ff or 4 * d_model
            with torch.device("meta"):
                model = nn.Module()
                model.tokens, model.positions = nn.Embedding(vocab_size, d_model), nn.Embedding(n_ctx, d_model)
                model.register_buffer("causal", torch.ones(n_ctx, n_ctx, dtype=torch.bool).tril())
                model.blocks = nn.ModuleList(
                    nn.ModuleList([*(nn.Linear(d_model, d_model, bias=biases) for _ in range(4)),
                                   nn.Linear(d_model, d_ff, bias=biases), nn.Linear(d_ff, d_model, bias=biases),
                                   nn.LayerNorm(d_model, bias=biases), nn.LayerNorm(d_model, bias=biases)])
                    for _ in range(n_layers)
                )
                model.final_norm = nn.LayerNorm(d_model, bias=biases)
                model.head = nn.Linear(d_model, vocab_size, bias=False)
                if tied_embeddings:
                    model.head.weight = model.tokens.weight
            return sum(tensor.numel() for tensor in model.state_dict().values())
    """,
        fails=("default_gpt_configurations",),
        says="outside the blocks",
    ),
]
