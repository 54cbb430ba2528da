"""Chapter 2 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``)."""

from corpus import advised, alternative, bug

SOFTMAX = [
    bug(
        "softmax",
        "exponentials not normalised",
        """
        def softmax(x, dim=-1):
            return (x - x.max(dim=dim, keepdim=True).values).exp()
    """,
        says="not divided by their sum",
    ),
    bug(
        "softmax",
        "no max subtraction",
        """
        import torch

        def softmax(x, dim=-1):
            exps = torch.exp(x)
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["stable_for_large_logits"],
        says="exp() overflows",
    ),
    bug(
        "softmax",
        "the maximum of the whole tensor, not of each slice",
        """
        def softmax(x, dim=-1):
            exps = (x - x.max()).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["stable_for_large_logits"],
        says="underflows to 0",
    ),
    bug(
        "softmax",
        "dim ignored",
        """
        def softmax(x, dim=-1):
            exps = (x - x.amax(-1, keepdim=True)).exp()
            return exps / exps.sum(-1, keepdim=True)
    """,
        fails=["respects_dim_argument"],
        says="dim argument is ignored",
    ),
    bug(
        "softmax",
        "shifts the input in place",
        """
        def softmax(x, dim=-1):
            x -= x.amax(dim=dim, keepdim=True)
            x.exp_()
            return x / x.sum(dim=dim, keepdim=True)
    """,
        fails=["matches_reference_on_last_dim", "respects_dim_argument"],
        says="in place",
    ),
    advised(
        "softmax",
        "torch.softmax, which the exercise rules out",
        """
        import torch

        def softmax(x, dim=-1):
            return torch.softmax(x, dim=dim)
    """,
        advice=("no_library_softmax",),
        says="PyTorch's own softmax",
    ),
    advised(
        "softmax",
        "torch.softmax inside a TorchScript function",
        """
        import torch

        @torch.jit.script
        def _softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
            return torch.softmax(x, dim)

        def softmax(x, dim=-1):
            return _softmax(x, dim)
    """,
        advice=("no_library_softmax",),
        says="PyTorch's own softmax",
    ),
    advised(
        "softmax",
        "the aten operator called directly (torch.ops.aten.softmax.int)",
        """
        import torch

        def softmax(x, dim=-1):
            return torch.ops.aten.softmax.int(x, dim)
    """,
        advice=("no_library_softmax",),
        says="PyTorch's own softmax",
    ),
    advised(
        "softmax",
        "torch.softmax run in a worker thread, out of the grader's sight",
        """
        from concurrent.futures import ThreadPoolExecutor

        import torch

        def softmax(x, dim=-1):
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(torch.softmax, x, dim).result()
    """,
        advice=(),
    ),
    advised(
        "softmax",
        "log_softmax().exp(), the built-in in disguise",
        """
        def softmax(x, dim=-1):
            return x.log_softmax(dim).exp()
    """,
        advice=("no_library_softmax",),
        says="PyTorch's own softmax",
    ),
    alternative(
        "softmax",
        "log-sum-exp",
        """
        import torch

        def softmax(x, dim=-1):
            return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
    """,
    ),
    alternative(
        "softmax",
        "float64, in place on its own copies",
        """
        def softmax(x, dim=-1):
            y = x.double()
            y = y - y.max(dim, keepdim=True).values
            y.exp_()
            y /= y.sum(dim, keepdim=True)
            return y.to(x.dtype)
    """,
    ),
    alternative(
        "softmax",
        "dim moved to the end and back",
        """
        import torch

        def softmax(x, dim=-1):
            moved = torch.movedim(x, dim, -1)
            exps = torch.exp(moved - moved.amax(-1, keepdim=True))
            return torch.movedim(exps / exps.sum(-1, keepdim=True), -1, dim)
    """,
    ),
    bug(
        "softmax",
        "dim ignored for the sum",
        """
        def softmax(x, dim=-1):
            exps = (x - x.amax(dim=dim, keepdim=True)).exp()
            return exps / exps.sum(dim=-1, keepdim=True)
    """,
        fails=["respects_dim_argument"],
    ),
    bug(
        "softmax",
        "sum without keepdim",
        """
        def softmax(x, dim=-1):
            exps = (x - x.amax(dim=dim, keepdim=True)).exp()
            return exps / exps.sum(dim=dim)
    """,
        fails=["matches_reference_on_last_dim", "respects_dim_argument"],
    ),
    bug(
        "softmax",
        "logits clamped instead of shifted",
        """
        def softmax(x, dim=-1):
            exps = x.clamp(max=80).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["stable_for_large_logits"],
    ),
    bug(
        "softmax",
        "shift by the mean",
        """
        def softmax(x, dim=-1):
            exps = (x - x.mean(dim=dim, keepdim=True)).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["stable_for_large_logits"],
    ),
    bug(
        "softmax",
        "computed in float32",
        """
        def softmax(x, dim=-1):
            x = x.float()
            exps = (x - x.amax(dim=dim, keepdim=True)).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["respects_dim_argument"],
        says="dtype torch.float32",
    ),
    bug(
        "softmax",
        "normalised over the whole tensor",
        """
        def softmax(x, dim=-1):
            exps = (x - x.amax(dim=dim, keepdim=True)).exp()
            return exps / exps.sum()
    """,
        fails=["matches_reference_on_last_dim", "respects_dim_argument"],
    ),
    bug(
        "softmax",
        "max along dim 0 whatever dim is",
        """
        def softmax(x, dim=-1):
            exps = (x - x.amax(dim=0, keepdim=True)).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["matches_reference_on_last_dim"],
    ),
    alternative(
        "softmax",
        "own log-sum-exp",
        """
        def softmax(x, dim=-1):
            m = x.amax(dim=dim, keepdim=True)
            lse = m + (x - m).exp().sum(dim=dim, keepdim=True).log()
            return (x - lse).exp()
    """,
    ),
    alternative(
        "softmax",
        "float64 internals, movedim to the end",
        """
        def softmax(x, dim=-1):
            y = x.double().movedim(dim, -1)
            y = y - y.max(dim=-1, keepdim=True).values
            e = torch.exp(y)
            return (e * (1.0 / e.sum(-1, keepdim=True))).movedim(-1, dim).to(x.dtype)
    """,
    ),
    alternative(
        "softmax",
        "torch.max with keepdim, torch.div",
        """
        def softmax(x, dim=-1):
            biggest, _ = torch.max(x, dim, True)
            e = torch.exp(torch.sub(x, biggest))
            return torch.div(e, torch.sum(e, dim, True))
    """,
    ),
    bug(
        "softmax",
        "argmax indices subtracted instead of the max",
        """
        def softmax(x, dim=-1):
            exps = (x - x.max(dim=dim, keepdim=True)[1]).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        fails=["stable_for_large_logits"],
    ),
    alternative(
        "softmax",
        "max without keepdim, unsqueezed back",
        """
        def softmax(x, dim=-1):
            m = x.max(dim).values.unsqueeze(dim)
            e = (x - m).exp()
            return e / e.sum(dim).unsqueeze(dim)
    """,
    ),
]


def _sdpa(body: str) -> str:
    """An attention answer with its own stable softmax (the softmax cell keeps its stub)."""
    return "import math\n\nimport torch\n\n\n" + body


ATTENTION = [
    bug(
        "scaled_dot_product_attention",
        "its own softmax shifted by the scores' mean, not their maximum",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    finite = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores))
    exps = torch.exp(scores - finite.mean(-1, keepdim=True))
    weights = exps / exps.sum(-1, keepdim=True)
    return weights @ v, weights
"""),
        fails=["stable_for_large_scores"],
        says="|q.k| ~ 1e4",
    ),
    bug(
        "scaled_dot_product_attention",
        "scaled by sqrt(d_v)",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["matches_reference"],
        says="divided by sqrt(d_v)",
    ),
    bug(
        "scaled_dot_product_attention",
        "d_k read from the wrong axis (q.shape[0])",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    d_k = q.shape[0]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["matches_reference"],
        says="divided by sqrt(N_q)",
    ),
    bug(
        "scaled_dot_product_attention",
        "no scaling",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["matches_reference", "batch_and_head_dimensions"],
        says="not divided by sqrt(d_k)",
    ),
    bug(
        "scaled_dot_product_attention",
        "mask applied after the softmax",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights
"""),
        fails=["mask_blocks_keys", "padding_and_causal_masks_broadcast"],
        says="after the softmax",
    ),
    bug(
        "scaled_dot_product_attention",
        "masked scores set to 0",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores * mask
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["mask_blocks_keys"],
        says="masked score of 0",
    ),
    bug(
        "scaled_dot_product_attention",
        "mask inverted (True = hidden, as in nn.MultiheadAttention)",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["mask_blocks_keys"],
        says="inverted",
    ),
    bug(
        "scaled_dot_product_attention",
        "k.transpose(0, 1): right for (N, d) only",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(0, 1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["batch_and_head_dimensions", "mask_blocks_keys"],
    ),
    bug(
        "scaled_dot_product_attention",
        "queries scaled in place",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    q /= math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["matches_reference"],
        says="changed its argument 1 in place",
    ),
    bug(
        "scaled_dot_product_attention",
        "boolean indexing assumes the mask has the scores' shape",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores[~mask] = float("-inf")
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["mask_blocks_keys", "padding_and_causal_masks_broadcast"],
    ),
    bug(
        "scaled_dot_product_attention",
        "softmax over the queries",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2)
    return weights @ v, weights
"""),
        fails=["weights_rows_sum_to_one", "matches_reference"],
        says="softmax runs over the queries",
    ),
    bug(
        "scaled_dot_product_attention",
        "its own softmax without the max",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    exps = scores.exp()
    weights = exps / exps.sum(-1, keepdim=True)
    return weights @ v, weights
"""),
        fails=["stable_for_large_scores"],
    ),
    bug(
        "scaled_dot_product_attention",
        "an additive mask: the bool mask added to the scores",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
"""),
        fails=["mask_blocks_keys"],
    ),
    alternative(
        "scaled_dot_product_attention",
        "torch.where, einsum, q scaled first",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    q = q / math.sqrt(q.size(-1))
    scores = torch.einsum("...id,...jd->...ij", q, k)
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    scores = scores - scores.amax(-1, keepdim=True)
    weights = scores.exp() / scores.exp().sum(-1, keepdim=True)
    return torch.einsum("...ij,...jd->...id", weights, v), weights
"""),
    ),
    alternative(
        "scaled_dot_product_attention",
        "a large negative fill, k.mT, in-place ops on its own scores",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = torch.matmul(q, k.mT)
    scores *= q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), -1e9)
    weights = torch.nn.functional.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights
"""),
    ),
    alternative(
        "scaled_dot_product_attention",
        "the scale as a float32 tensor, torch.sqrt(torch.tensor(d_k))",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            d_k = torch.tensor(k.shape[-1], dtype=torch.float32)
            scores = torch.matmul(q, k.transpose(-2, -1)) / torch.sqrt(d_k)
            if mask is not None:
                scores = scores.masked_fill(mask == 0, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return torch.matmul(weights, v), weights
    """,
    ),
    alternative(
        "scaled_dot_product_attention",
        "a 0/1 float mask mixed into the scores",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                keep = mask.to(scores.dtype)
                scores = scores * keep + (1.0 - keep) * -1e9
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
    ),
    alternative(
        "scaled_dot_product_attention",
        "float64 throughout, cast back",
        _sdpa("""
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(k.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask.bool(), -math.inf)
    weights = torch.softmax(scores, -1)
    return (weights @ v.double()).to(v.dtype), weights.to(q.dtype)
"""),
    ),
    bug(
        "scaled_dot_product_attention",
        "scale by d_k",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / q.shape[-1]
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["matches_reference", "batch_and_head_dimensions"],
        says="divided by d_k",
    ),
    bug(
        "scaled_dot_product_attention",
        "d_k read from q.shape[1]",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["batch_and_head_dimensions"],
    ),
    bug(
        "scaled_dot_product_attention",
        "transposed weights times v",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights.transpose(-2, -1) @ v, weights
    """,
        fails=["matches_reference"],
    ),
    bug(
        "scaled_dot_product_attention",
        "k.transpose(1, 2)",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            kt = k.transpose(1, 2) if k.dim() > 2 else k.T
            scores = q @ kt / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["batch_and_head_dimensions", "mask_blocks_keys"],
    ),
    bug(
        "scaled_dot_product_attention",
        "weights detached",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1).detach()
            return weights @ v, weights
    """,
        fails=["float64_output_and_gradients"],
        says="no gradient reaches q",
    ),
    bug(
        "scaled_dot_product_attention",
        "computed in float32",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            q, k, v = q.float(), k.float(), v.float()
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["float64_output_and_gradients"],
        says="dtype torch.float32",
    ),
    bug(
        "scaled_dot_product_attention",
        "mask transposed",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask.transpose(-2, -1), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["mask_blocks_keys"],
    ),
    alternative(
        "scaled_dot_product_attention",
        "einsum, q scaled first, torch.where with finfo.min",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = torch.einsum("...qd,...kd->...qk", q / q.size(-1) ** 0.5, k)
            if mask is not None:
                scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
            weights = scores.softmax(-1)
            return torch.einsum("...qk,...kv->...qv", weights, v), weights
    """,
    ),
    alternative(
        "scaled_dot_product_attention",
        "float64 internals, additive mask",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            dtype = q.dtype
            q64, k64, v64 = q.double(), k.double(), v.double()
            scores = q64 @ k64.transpose(-1, -2) / math.sqrt(q.shape[-1])
            if mask is not None:
                bias = torch.zeros(mask.shape, dtype=torch.float64).masked_fill(~mask, float("-inf"))
                scores = scores + bias
            weights = torch.softmax(scores, dim=-1)
            return (weights @ v64).to(dtype), weights.to(dtype)
    """,
    ),
    bug(
        "scaled_dot_product_attention",
        "leading dims flattened into one sequence",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            lead = q.shape[:-2]
            q2, k2, v2 = q.reshape(-1, q.shape[-1]), k.reshape(-1, k.shape[-1]), v.reshape(-1, v.shape[-1])
            scores = q2 @ k2.T / math.sqrt(q.shape[-1])
            weights = torch.softmax(scores, dim=-1)
            out = weights @ v2
            n_q, n_k = q.shape[-2], k.shape[-2]
            if not lead:
                if mask is not None:
                    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
                    out = weights @ v2
                return out, weights
            return out.reshape(*lead, n_q, -1), weights[:n_q, :n_k].expand(*lead, n_q, n_k)
    """,
        fails=["batch_and_head_dimensions", "mask_blocks_keys"],
    ),
    bug(
        "scaled_dot_product_attention",
        "the scale applied to v",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores / math.sqrt(q.shape[-1]), dim=-1)
            return weights @ (v / math.sqrt(q.shape[-1])), weights
    """,
        fails=["matches_reference", "batch_and_head_dimensions"],
    ),
    alternative(
        "scaled_dot_product_attention",
        "mask == 0, a 2-D mask unsqueezed, baddbmm-free matmul",
        """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / q.shape[-1] ** 0.5)
            if mask is not None:
                while mask.dim() < scores.dim():
                    mask = mask.unsqueeze(0)
                scores = scores.masked_fill(mask == 0, -float("inf"))
            weights = scores.softmax(dim=-1)
            return torch.matmul(weights, v), weights
    """,
    ),
]

CAUSAL = [
    bug(
        "causal_mask",
        "triu: the future instead of the past",
        """
        import torch

        def causal_mask(n):
            return torch.ones(n, n, dtype=torch.bool).triu()
    """,
        fails=["true_on_and_below_diagonal"],
        says="on and above the diagonal",
    ),
    bug(
        "causal_mask",
        "a float mask of ones and zeros",
        """
        import torch

        def causal_mask(n):
            return torch.tril(torch.ones(n, n))
    """,
        fails=["bool_square_shape", "true_on_and_below_diagonal"],
        says="bool",
    ),
    bug(
        "causal_mask",
        "strictly below the diagonal",
        """
        import torch

        def causal_mask(n):
            return torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1)
    """,
        fails=["true_on_and_below_diagonal"],
        says="diagonal is False",
    ),
    bug(
        "causal_mask",
        "an additive mask (0 and -inf)",
        """
        import torch

        def causal_mask(n):
            return torch.full((n, n), float("-inf")).triu(1)
    """,
        fails=["bool_square_shape", "true_on_and_below_diagonal"],
        says="bool",
    ),
    bug(
        "causal_mask",
        "True where hidden (nn.MultiheadAttention's convention)",
        """
        import torch

        def causal_mask(n):
            return torch.ones(n, n, dtype=torch.bool).triu(1)
    """,
        fails=["true_on_and_below_diagonal"],
        says="inverted",
    ),
    alternative(
        "causal_mask",
        "comparison of index grids",
        """
        import torch

        def causal_mask(n):
            i = torch.arange(n)
            return i[:, None] >= i[None, :]
    """,
    ),
    alternative(
        "causal_mask",
        "the complement of the strict upper triangle",
        """
        import torch

        def causal_mask(n):
            return ~torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    """,
    ),
    alternative(
        "causal_mask",
        "float tril compared with 1",
        """
        import torch

        def causal_mask(n):
            return torch.tril(torch.ones(n, n)) == 1
    """,
    ),
    bug(
        "causal_mask",
        "sliced from a precomputed 10 x 10 mask",
        """
        _MASK = torch.ones(10, 10, dtype=torch.bool).tril()

        def causal_mask(n):
            return _MASK[:n, :n]
    """,
        fails=["bool_square_shape"],
        says="has shape (10, 10)",
    ),
    bug(
        "causal_mask",
        "one row too many",
        """
        def causal_mask(n):
            return torch.ones(n + 1, n, dtype=torch.bool).tril()
    """,
        fails=["bool_square_shape", "true_on_and_below_diagonal"],
    ),
    alternative(
        "causal_mask",
        "a loop over the rows",
        """
        def causal_mask(n):
            mask = torch.zeros(n, n, dtype=torch.bool)
            for i in range(n):
                mask[i, : i + 1] = True
            return mask
    """,
    ),
    bug(
        "causal_mask",
        "uint8 mask",
        """
        def causal_mask(n):
            return torch.ones(n, n, dtype=torch.uint8).tril()
    """,
        fails=["bool_square_shape"],
    ),
    alternative(
        "causal_mask",
        "numpy tril made a tensor",
        """
        import numpy as np

        def causal_mask(n):
            return torch.from_numpy(np.tril(np.ones((n, n), dtype=bool)))
    """,
    ),
]

ENTRIES = SOFTMAX + ATTENTION + CAUSAL


# Issue 21's input classes, written from the notebook's docstrings: inputs in any memory layout
# (a transposed or strided view), gradients, every mask form, sizes at the contract's edges.
INPUT_CLASSES = [
    bug(
        "softmax",
        "a fast path for the last dim that flattens rows with .view",
        """
        def softmax(x, dim=-1):
            if dim in (-1, x.dim() - 1):
                rows = x.view(-1, x.shape[-1])
                exps = (rows - rows.max(dim=1, keepdim=True).values).exp()
                return (exps / exps.sum(dim=1, keepdim=True)).view(x.shape)
            exps = (x - x.amax(dim=dim, keepdim=True)).exp()
            return exps / exps.sum(dim=dim, keepdim=True)
    """,
        says="view",
    ),
    alternative(
        "softmax",
        "rows flattened with reshape",
        """
        def softmax(x, dim=-1):
            moved = x.movedim(dim, -1)
            rows = moved.reshape(-1, moved.shape[-1])
            exps = (rows - rows.max(dim=1, keepdim=True).values).exp()
            return (exps / exps.sum(dim=1, keepdim=True)).reshape(moved.shape).movedim(-1, dim)
    """,
    ),
    alternative(
        "softmax",
        "a contiguous copy, then view",
        """
        def softmax(x, dim=-1):
            rows = x.movedim(dim, -1).contiguous()
            flat = rows.view(-1, rows.shape[-1])
            exps = (flat - flat.max(dim=1, keepdim=True).values).exp()
            return (exps / exps.sum(dim=1, keepdim=True)).view(rows.shape).movedim(-1, dim)
    """,
    ),
    bug(
        "scaled_dot_product_attention",
        "leading dims flattened with .view for torch.bmm",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            *lead, n_q, d_k = q.shape
            n_k, d_v = k.shape[-2], v.shape[-1]
            q3, k3, v3 = q.view(-1, n_q, d_k), k.view(-1, n_k, d_k), v.view(-1, n_k, d_v)
            scores = torch.bmm(q3, k3.transpose(1, 2)).view(*lead, n_q, n_k) / math.sqrt(d_k)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            output = torch.bmm(weights.reshape(-1, n_q, n_k), v3).view(*lead, n_q, d_v)
            return output, weights
    """,
        says="view",
    ),
    bug(
        "scaled_dot_product_attention",
        "k.T, right for (N, d) only",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.T / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        says="transpose(-2, -1)",
    ),
    bug(
        "scaled_dot_product_attention",
        "the mask reshaped to (N_q, N_k): a padding mask (B, 1, 1, N_k) breaks it",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask.reshape(scores.shape[-2], scores.shape[-1]), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """,
        fails=["padding_and_causal_masks_broadcast"],
    ),
    bug(
        "scaled_dot_product_attention",
        "float32 weights returned for float64 inputs (cast for plotting)",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights.float()
    """,
        says="weights",
    ),
    bug(
        "scaled_dot_product_attention",
        "squeezed results: a batch or a sequence of one loses its axis",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return (weights @ v).squeeze(), weights.squeeze()
    """,
        says="shape",
    ),
    bug(
        "scaled_dot_product_attention",
        "masked weights zeroed in place after the softmax (breaks backward)",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            if mask is not None:
                weights.masked_fill_(~mask, 0.0)
            return weights @ v, weights
    """,
        says="in-place",
    ),
    bug(
        "scaled_dot_product_attention",
        "gradients only when q requires grad (no_grad otherwise, to save memory)",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            with torch.set_grad_enabled(q.requires_grad):
                scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                weights = torch.softmax(scores, dim=-1)
                return weights @ v, weights
    """,
        says="gradient",
    ),
    alternative(
        "scaled_dot_product_attention",
        "einsum with an ellipsis, contiguous copies",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
            scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
            weights = torch.softmax(scores, dim=-1)
            return torch.einsum("...qk,...kd->...qd", weights, v), weights
    """,
    ),
    alternative(
        "scaled_dot_product_attention",
        "leading dims flattened with reshape for torch.bmm",
        """
        import math

        def scaled_dot_product_attention(q, k, v, mask=None):
            *lead, n_q, d_k = q.shape
            n_k, d_v = k.shape[-2], v.shape[-1]
            scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            flat = torch.bmm(weights.reshape(-1, n_q, n_k), v.expand(*weights.shape[:-2], n_k, d_v).reshape(-1, n_k, d_v))
            return flat.reshape(*weights.shape[:-1], d_v), weights
    """,
    ),
    bug(
        "causal_mask",
        "cut from a 1024 x 1024 table (GPT-2's block size)",
        """
        TABLE = torch.ones(1024, 1024, dtype=torch.bool).tril()

        def causal_mask(n):
            return TABLE[:n, :n]
    """,
        fails=["bool_square_shape"],
    ),
    bug(
        "causal_mask",
        "numpy's tri, left as float64",
        """
        import numpy as np

        def causal_mask(n):
            return torch.from_numpy(np.tri(n))
    """,
        says="bool",
    ),
    alternative(
        "causal_mask",
        "numpy's tri made bool",
        """
        import numpy as np

        def causal_mask(n):
            return torch.from_numpy(np.tri(n)).bool()
    """,
    ),
]
ENTRIES += INPUT_CLASSES
