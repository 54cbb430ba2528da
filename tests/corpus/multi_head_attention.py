"""Chapter 3 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

An answer replaces one answer cell; the others keep their stubs, so a ``MultiHeadAttention``
here does its own head reshapes (the notebook's setup cell gives torch, nn, math and chapter 2's
``scaled_dot_product_attention`` and ``causal_mask``)."""

from corpus import alternative, bug

SPLIT = [
    bug(
        "split_heads",
        "interleaved heads: D viewed as (d_head, H)",
        """
        def split_heads(x, num_heads):
            batch, n, d_model = x.shape
            return x.reshape(batch, n, d_model // num_heads, num_heads).permute(0, 3, 1, 2)
    """,
        fails=["head_h_holds_features_of_block_h"],
        says="interleaved",
    ),
    bug(
        "split_heads",
        "reshaped straight to (B, H, N, D/H)",
        """
        def split_heads(x, num_heads):
            batch, n, d_model = x.shape
            return x.reshape(batch, num_heads, n, d_model // num_heads)
    """,
        fails=["head_h_holds_features_of_block_h"],
        says="reshaped straight",
    ),
    bug(
        "split_heads",
        "no transpose: (B, N, H, D/H)",
        """
        def split_heads(x, num_heads):
            batch, n, d_model = x.shape
            return x.view(batch, n, num_heads, d_model // num_heads)
    """,
        fails=["shape_b_h_n_dhead", "head_h_holds_features_of_block_h"],
        says="head dimension must come second",
    ),
    bug(
        "split_heads",
        "num_heads taken as the width of a head",
        """
        def split_heads(x, num_heads):
            batch, n, d_model = x.shape
            return x.reshape(batch, n, d_model // num_heads, num_heads).transpose(1, 2)
    """,
        fails=["shape_b_h_n_dhead"],
    ),
    alternative(
        "split_heads",
        "chunks stacked along a new head dimension",
        """
        import torch

        def split_heads(x, num_heads):
            return torch.stack(x.chunk(num_heads, dim=-1), dim=1)
    """,
    ),
    alternative(
        "split_heads",
        "view, permute, contiguous",
        """
        def split_heads(x, num_heads):
            batch, n, _ = x.shape
            return x.view(batch, n, num_heads, -1).permute(0, 2, 1, 3).contiguous()
    """,
    ),
]

MERGE = [
    bug(
        "merge_heads",
        "reshaped straight to (B, N, D)",
        """
        def merge_heads(x):
            batch, heads, n, d_head = x.shape
            return x.reshape(batch, n, heads * d_head)
    """,
        fails=["inverse_of_split_heads"],
        says="reshaped straight",
    ),
    bug(
        "merge_heads",
        "heads interleaved into the features",
        """
        def merge_heads(x):
            batch, heads, n, d_head = x.shape
            return x.permute(0, 2, 3, 1).reshape(batch, n, heads * d_head)
    """,
        fails=["inverse_of_split_heads"],
        says="interleaved",
    ),
    bug(
        "merge_heads",
        "view after transpose (fails on a contiguous input)",
        """
        def merge_heads(x):
            batch, heads, n, d_head = x.shape
            return x.transpose(1, 2).view(batch, n, heads * d_head)
    """,
        fails=["shape_b_n_d"],
        says="view size is not compatible",
    ),
    bug(
        "merge_heads",
        "the last two dims swapped instead of heads and tokens",
        """
        def merge_heads(x):
            batch, heads, n, d_head = x.shape
            return x.transpose(2, 3).reshape(batch, n, heads * d_head)
    """,
        fails=["inverse_of_split_heads"],
    ),
    alternative(
        "merge_heads",
        "the heads concatenated along the features",
        """
        import torch

        def merge_heads(x):
            return torch.cat(x.unbind(dim=1), dim=-1)
    """,
    ),
    alternative(
        "merge_heads",
        "permute then flatten",
        """
        def merge_heads(x):
            return x.permute(0, 2, 1, 3).flatten(start_dim=2)
    """,
    ),
]


def _mha(forward: str, init: str = "", helpers: str = "") -> str:
    """A MultiHeadAttention cell: the given pieces around the usual constructor."""
    init = (
        init
        or """
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
"""
    )
    helpers = (
        helpers
        or """
def to_heads(x, h):
    b, n, d = x.shape
    return x.reshape(b, n, h, d // h).transpose(1, 2)


def from_heads(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)
"""
    )
    return (
        "import math\n\nimport torch\nfrom torch import nn\n"
        + helpers
        + "\n\nclass MultiHeadAttention(nn.Module):"
        + init
        + forward
    )


STANDARD_FORWARD = """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""

MHA = [
    bug(
        "MultiHeadAttention",
        "scores scaled by sqrt(d_model)",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        scores = q @ k.transpose(-2, -1) / math.sqrt(query.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.w_o(from_heads(weights @ v)), weights
"""),
        fails=["self_attention_matches_pytorch"],
        says="sqrt(d_model)",
    ),
    bug(
        "MultiHeadAttention",
        "value defaults to the query",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = query if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""),
        fails=["value_defaults_to_key"],
        says="value defaults to query",
    ),
    bug(
        "MultiHeadAttention",
        "w_o never applied",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return from_heads(heads), weights
"""),
        fails=["self_attention_matches_pytorch"],
        says="w_o not applied",
    ),
    bug(
        "MultiHeadAttention",
        "weights averaged over the heads",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights.mean(dim=1)
"""),
        fails=["output_and_per_head_weights_shapes"],
        says="not their average",
    ),
    bug(
        "MultiHeadAttention",
        "mask inverted to match nn.MultiheadAttention",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)
        return self.w_o(from_heads(heads)), weights
"""),
        fails=["masks_of_each_documented_shape"],
        says="inverted",
    ),
    bug(
        "MultiHeadAttention",
        "heads interleaved",
        _mha(
            STANDARD_FORWARD,
            helpers="""
def to_heads(x, h):
    b, n, d = x.shape
    return x.reshape(b, n, d // h, h).permute(0, 3, 1, 2)


def from_heads(x):
    b, h, n, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n, h * d)
""",
        ),
        fails=["self_attention_matches_pytorch"],
        says="interleaved",
    ),
    bug(
        "MultiHeadAttention",
        "mask as the second parameter: model(query, key) puts the key in mask",
        _mha("""
    def forward(self, query, mask=None, key=None, value=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""),
        fails=["value_defaults_to_key", "cross_attention_matches_pytorch"],
        says="parameter meant for another",
    ),
    bug(
        "MultiHeadAttention",
        "bias argument ignored",
        _mha(
            STANDARD_FORWARD,
            init="""
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))
""",
        ),
        fails=["without_bias_matches_pytorch"],
        says="has a bias although",
    ),
    bug(
        "MultiHeadAttention",
        "a head dimension added to every mask",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, None if mask is None else mask[:, None])
        return self.w_o(from_heads(heads)), weights
"""),
        fails=["masks_of_each_documented_shape"],
    ),
    bug(
        "MultiHeadAttention",
        "w_q used for the keys too",
        _mha("""
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_q(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""),
        fails=["self_attention_matches_pytorch", "cross_attention_matches_pytorch"],
    ),
    alternative(
        "MultiHeadAttention",
        "one loop over the heads, slicing features",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        width = q.shape[-1] // self.num_heads
        outputs, all_weights = [], []
        for h in range(self.num_heads):
            block = slice(h * width, (h + 1) * width)
            head_mask = None
            if mask is not None:
                head_mask = mask if mask.dim() == 2 else mask[:, 0]
            output, weights = scaled_dot_product_attention(q[..., block], k[..., block], v[..., block], head_mask)
            outputs.append(output)
            all_weights.append(weights)
        return self.w_o(torch.cat(outputs, dim=-1)), torch.stack(all_weights, dim=1)
""",
            helpers="\n",
        ),
    ),
    alternative(
        "MultiHeadAttention",
        "float64 einsum with torch.where masking, cast back",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        if key is None:
            key = query
        if value is None:
            value = key
        h = self.num_heads
        q = self.w_q(query).unflatten(-1, (h, -1)).double()
        k = self.w_k(key).unflatten(-1, (h, -1)).double()
        v = self.w_v(value).unflatten(-1, (h, -1)).double()
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = torch.where(mask, scores, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        heads = torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(-2).to(query.dtype)
        return self.w_o(heads), weights.to(query.dtype)
""",
            helpers="\n",
        ),
    ),
]

ENTRIES = SPLIT + MERGE + MHA
