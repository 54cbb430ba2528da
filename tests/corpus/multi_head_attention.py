"""Chapter 3 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``).

An answer replaces one answer cell; the others keep their stubs, so a ``MultiHeadAttention``
here does its own head reshapes (the notebook's setup cell gives torch, nn, math and chapter 2's
``scaled_dot_product_attention`` and ``causal_mask``)."""

from corpus import advised, alternative, bug

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
    bug(
        "split_heads",
        "permute to (B, H, d_head, N)",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            return x.reshape(B, N, num_heads, D // num_heads).permute(0, 2, 3, 1)
    """,
        fails=["shape_b_h_n_dhead"],
    ),
    bug(
        "split_heads",
        "d_head from the token count",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            return x.reshape(B, N, num_heads, N // num_heads).transpose(1, 2)
    """,
        fails=["shape_b_h_n_dhead"],
    ),
    bug(
        "split_heads",
        "batch and tokens flattened, then reshaped",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            flat = x.reshape(B * N, num_heads, D // num_heads).transpose(0, 1)
            return flat.reshape(B, num_heads, N, D // num_heads)
    """,
        fails=["head_h_holds_features_of_block_h"],
    ),
    bug(
        "split_heads",
        "heads in reverse order",
        """
        def split_heads(x, num_heads):
            return torch.stack(x.chunk(num_heads, dim=-1)[::-1], dim=1)
    """,
        fails=["head_h_holds_features_of_block_h"],
    ),
    bug(
        "split_heads",
        "chunked along the tokens",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            return x.reshape(B, num_heads, N // num_heads, D).reshape(B, num_heads, N, D // num_heads)
    """,
        fails=["head_h_holds_features_of_block_h"],
    ),
    alternative(
        "split_heads",
        "unflatten and movedim",
        """
        def split_heads(x, num_heads):
            return x.unflatten(-1, (num_heads, -1)).movedim(-2, 1)
    """,
    ),
    alternative(
        "split_heads",
        "loop over heads with slices",
        """
        def split_heads(x, num_heads):
            d = x.shape[-1] // num_heads
            return torch.stack([x[..., h * d:(h + 1) * d] for h in range(num_heads)], dim=1)
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
    bug(
        "merge_heads",
        "heads concatenated in reverse order",
        """
        def merge_heads(x):
            return torch.cat(list(x.unbind(1))[::-1], dim=-1)
    """,
        fails=["inverse_of_split_heads"],
    ),
    bug(
        "merge_heads",
        "tokens moved in front of the batch",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return x.permute(2, 0, 1, 3).reshape(B, N, H * d)
    """,
        fails=["inverse_of_split_heads"],
    ),
    bug(
        "merge_heads",
        "H and N swapped when unpacking",
        """
        def merge_heads(x):
            B, N, H, d = x.shape
            return x.transpose(1, 2).reshape(B, N, H * d)
    """,
        fails=["shape_b_n_d"],
    ),
    bug(
        "merge_heads",
        "sum over the heads tiled",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return x.sum(dim=1).repeat(1, 1, H)
    """,
        fails=["inverse_of_split_heads"],
    ),
    alternative(
        "merge_heads",
        "movedim, contiguous, view",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return x.movedim(1, 2).contiguous().view(B, N, H * d)
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
    bug(
        "MultiHeadAttention",
        "w_k used for the values",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                q, k, v = self._split(self.w_q(query)), self._split(self.w_k(key)), self._split(self.w_k(value))
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.w_o(self._merge(out)), weights
    """,
        fails=["self_attention_matches_pytorch", "cross_attention_matches_pytorch"],
    ),
    bug(
        "MultiHeadAttention",
        "dropout on the weights",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                q, k, v = self._split(self.w_q(query)), self._split(self.w_k(key)), self._split(self.w_v(value))
                _, weights = scaled_dot_product_attention(q, k, v, mask)
                weights = nn.functional.dropout(weights, p=0.1, training=self.training)
                return self.w_o(self._merge(weights @ v)), weights
    """,
        fails=["self_attention_matches_pytorch"],
    ),
    bug(
        "MultiHeadAttention",
        "scaled twice",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                q, k, v = self._split(self.w_q(query)), self._split(self.w_k(key)), self._split(self.w_v(value))
                q = q / math.sqrt(q.shape[-1])
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.w_o(self._merge(out)), weights
    """,
        fails=["self_attention_matches_pytorch"],
    ),
    bug(
        "MultiHeadAttention",
        "sequence-first reading of batch-first inputs",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
                q, k, v = self._split(self.w_q(query)), self._split(self.w_k(key)), self._split(self.w_v(value))
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.w_o(self._merge(out)).transpose(0, 1), weights
    """,
        fails=["output_and_per_head_weights_shapes"],
    ),
    bug(
        "MultiHeadAttention",
        "mask squeezed to (B, N_k)",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                q, k, v = self._split(self.w_q(query)), self._split(self.w_k(key)), self._split(self.w_v(value))
                if mask is not None:
                    mask = mask.squeeze()
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.w_o(self._merge(out)), weights
    """,
        fails=["masks_of_each_documented_shape"],
    ),
    advised(
        "MultiHeadAttention",
        "torch.nn.MultiheadAttention inside",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                D = query.shape[-1]
                w = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
                bq = None if self.w_q.bias is None else torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
                attn_mask = None
                if mask is not None:
                    m = torch.broadcast_to(mask, (query.shape[0], self.num_heads, query.shape[1], key.shape[1]))
                    attn_mask = ~m.reshape(-1, query.shape[1], key.shape[1])
                out, weights = nn.functional.multi_head_attention_forward(
                    query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), D, self.num_heads, w, bq,
                    None, None, False, 0.0, self.w_o.weight, self.w_o.bias, training=False, need_weights=True,
                    attn_mask=attn_mask, average_attn_weights=False)
                return out.transpose(0, 1), weights
    """,
        advice=("no_library_attention",),
        says="PyTorch's own multi-head attention",
    ),
    alternative(
        "MultiHeadAttention",
        "fused projection for self-attention, einsum heads",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                assert d_model % num_heads == 0
                self.heads, self.d_head = num_heads, d_model // num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def forward(self, query, key=None, value=None, mask=None):
                if key is None and value is None:
                    w = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
                    b = None if self.w_q.bias is None else torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
                    q, k, v = nn.functional.linear(query, w, b).chunk(3, dim=-1)
                else:
                    key = query if key is None else key
                    value = key if value is None else value
                    q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
                q, k, v = (t.unflatten(-1, (self.heads, self.d_head)) for t in (q, k, v))  # (B, N, H, d)
                scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head)
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                weights = scores.softmax(dim=-1)
                out = torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(2)
                return self.w_o(out), weights
    """,
    ),
    alternative(
        "MultiHeadAttention",
        "loop over heads with weight slices",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                nn.Module.__init__(self)
                self.num_heads = num_heads
                for name in ("w_q", "w_k", "w_v", "w_o"):
                    setattr(self, name, nn.Linear(d_model, d_model, bias=bias))

            def forward(self, query, key=None, value=None, mask=None):
                if key is None:
                    key = query
                if value is None:
                    value = key
                q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
                d = q.shape[-1] // self.num_heads
                outs, all_weights = [], []
                for h in range(self.num_heads):
                    part = slice(h * d, (h + 1) * d)
                    m = None
                    if mask is not None:
                        m = torch.broadcast_to(mask, (q.shape[0], self.num_heads, q.shape[1], k.shape[1]))[:, h]
                    out, weights = scaled_dot_product_attention(q[..., part], k[..., part], v[..., part], m)
                    outs.append(out)
                    all_weights.append(weights)
                return self.w_o(torch.cat(outs, dim=-1)), torch.stack(all_weights, dim=1)
    """,
    ),
    alternative(
        "MultiHeadAttention",
        "ModuleDict-free, projections through F.linear and own helpers",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def _split(self, x):
                B, N, D = x.shape
                return x.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

            def _merge(self, x):
                B, H, N, d = x.shape
                return x.transpose(1, 2).reshape(B, N, H * d)


            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                F = nn.functional
                q = self._split(F.linear(query, self.w_q.weight, self.w_q.bias))
                k = self._split(F.linear(key, self.w_k.weight, self.w_k.bias))
                v = self._split(F.linear(value, self.w_v.weight, self.w_v.bias))
                if mask is not None and mask.dim() == 2:
                    mask = mask[None, None]
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return F.linear(self._merge(out), self.w_o.weight, self.w_o.bias), weights
    """,
    ),
    bug(
        "MultiHeadAttention",
        "every mask viewed as a padding mask (B, 1, 1, N_k)",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.num_heads = num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)

            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                B, N, D = query.shape
                def split(x):
                    return x.reshape(x.shape[0], x.shape[1], self.num_heads, D // self.num_heads).transpose(1, 2)
                q, k, v = split(self.w_q(query)), split(self.w_k(key)), split(self.w_v(value))
                if mask is not None:
                    mask = mask.reshape(mask.shape[0], 1, 1, -1)
                out, weights = scaled_dot_product_attention(q, k, v, mask)
                return self.w_o(out.transpose(1, 2).reshape(B, N, D)), weights
    """,
        fails=["masks_of_each_documented_shape"],
    ),
    alternative(
        "MultiHeadAttention",
        "scale folded into q, a cached causal buffer, 3-D masks accepted",
        """
        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, num_heads, bias=True):
                super().__init__()
                self.h, self.d = num_heads, d_model // num_heads
                self.w_q = nn.Linear(d_model, d_model, bias=bias)
                self.w_k = nn.Linear(d_model, d_model, bias=bias)
                self.w_v = nn.Linear(d_model, d_model, bias=bias)
                self.w_o = nn.Linear(d_model, d_model, bias=bias)
                self.register_buffer("unused", torch.ones(4, 4, dtype=torch.bool).tril(), persistent=False)

            def forward(self, query, key=None, value=None, mask=None):
                key = query if key is None else key
                value = key if value is None else value
                B, n_q, D = query.shape
                q = self.w_q(query).view(B, n_q, self.h, self.d).transpose(1, 2) * self.d ** -0.5
                k = self.w_k(key).view(B, -1, self.h, self.d).transpose(1, 2)
                v = self.w_v(value).view(B, -1, self.h, self.d).transpose(1, 2)
                scores = q @ k.transpose(-2, -1)
                if mask is not None:
                    if mask.dim() == 3:
                        mask = mask.unsqueeze(1)
                    scores = scores.masked_fill(~mask, float("-inf"))
                weights = torch.softmax(scores, dim=-1)
                out = (weights @ v).transpose(1, 2).contiguous().view(B, n_q, D)
                return self.w_o(out), weights
    """,
    ),
]

ENTRIES = SPLIT + MERGE + MHA


# Issue 21's input classes, written from the notebook's docstrings: inputs in any memory layout,
# a backward through the module, state across calls, every mask form, a batch or sequence of one.
INPUT_CLASSES = [
    bug(
        "split_heads",
        "tokens and features flattened with .view before the split",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            rows = x.view(B * N, D)
            return rows.view(B, N, num_heads, D // num_heads).transpose(1, 2)
    """,
        says="view",
    ),
    bug(
        "split_heads",
        "squeezed: a batch of one loses its axis",
        """
        def split_heads(x, num_heads):
            B, N, D = x.shape
            return x.reshape(B, N, num_heads, D // num_heads).transpose(1, 2).squeeze()
    """,
        says="shape",
    ),
    alternative(
        "split_heads",
        "unflatten on a contiguous copy, then transpose",
        """
        def split_heads(x, num_heads):
            return x.contiguous().unflatten(-1, (num_heads, -1)).transpose(1, 2)
    """,
    ),
    bug(
        "merge_heads",
        "view after transposing back: right only for what split_heads returns",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return x.transpose(1, 2).view(B, N, H * d)
    """,
        says="view",
    ),
    bug(
        "merge_heads",
        "squeezed: a sequence of one loses its axis",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return x.permute(0, 2, 1, 3).reshape(B, N, H * d).squeeze(1)
    """,
        says="shape",
    ),
    alternative(
        "merge_heads",
        "einops-style rearrangement with einsum and reshape",
        """
        def merge_heads(x):
            B, H, N, d = x.shape
            return torch.einsum("bhnd->bnhd", x).reshape(B, N, H * d)
    """,
    ),
    bug(
        "MultiHeadAttention",
        "the 1/sqrt(d_head) folded into w_q in place at every forward",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        with torch.no_grad():  # fold the scale into the query projection once
            self.w_q.weight.mul_(1 / math.sqrt(self.w_q.out_features // self.num_heads))
            if self.w_q.bias is not None:
                self.w_q.bias.mul_(1 / math.sqrt(self.w_q.out_features // self.num_heads))
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        scores = q @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.w_o(from_heads(weights @ v)), weights
"""
        ),
        says="parameters",
    ),
    bug(
        "MultiHeadAttention",
        "keys and values cached on the module at the first call",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        if not hasattr(self, "cache"):
            self.cache = (to_heads(self.w_k(key), self.num_heads), to_heads(self.w_v(value), self.num_heads))
        k, v = self.cache
        q = to_heads(self.w_q(query), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""
        ),
    ),
    bug(
        "MultiHeadAttention",
        "masked weights zeroed in place after the softmax (breaks backward)",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        if mask is not None:
            weights.masked_fill_(~mask, 0.0)
        return self.w_o(from_heads(weights @ v)), weights
"""
        ),
        says="in-place",
    ),
    bug(
        "MultiHeadAttention",
        "projections under torch.no_grad() (no gradient reaches the inputs or weights)",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        with torch.no_grad():
            q = to_heads(self.w_q(query), self.num_heads)
            k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""
        ),
        says="gradient",
    ),
    bug(
        "MultiHeadAttention",
        "a head axis added with unsqueeze(1): a causal (N, N) mask broadcasts wrongly",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)
        elif mask is not None and mask.dim() == 2:
            mask = mask.unsqueeze(0).unsqueeze(2)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights
"""
        ),
    ),
    alternative(
        "MultiHeadAttention",
        "heads split with .view of the projections (contiguous, whatever the inputs' layout)",
        _mha(
            STANDARD_FORWARD,
            helpers="""
def to_heads(x, h):
    b, n, d = x.shape
    return x.view(b * n, d).view(b, n, h, d // h).transpose(1, 2)


def from_heads(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)
""",
        ),
    ),
    bug(
        "MultiHeadAttention",
        "float32 weights returned for float64 inputs",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = to_heads(self.w_q(query), self.num_heads)
        k = to_heads(self.w_k(key), self.num_heads)
        v = to_heads(self.w_v(value), self.num_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(from_heads(heads)), weights.float()
"""
        ),
        says="weights",
    ),
    alternative(
        "MultiHeadAttention",
        "projections in one generator expression, einsum attention, a finfo.min fill",
        _mha(
            """
    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        h = self.num_heads
        q, k, v = (to_heads(layer(x), h) for layer, x in ((self.w_q, query), (self.w_k, key), (self.w_v, value)))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        return self.w_o(from_heads(torch.einsum("bhqk,bhkd->bhqd", weights, v))), weights
"""
        ),
    ),
]
ENTRIES += INPUT_CLASSES
