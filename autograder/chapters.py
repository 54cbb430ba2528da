"""The chapter registry: the one place that says what the course's chapters are.

Every list of chapters in the course reads this tuple: the grader (which check module a
notebook is graded with), the batch autograder, the nbgrader course setup, the command line
and the consistency test (``tests/test_registry.py``), which checks that the notebooks,
``_toc.yml``, ``solutions/``, ``autograder/checks/`` and the test corpus agree with it.
``CONTRIBUTING.md`` walks through adding a chapter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """One chapter.

    ``number`` and ``slug`` name its notebook, ``chapters/<NN>_<slug>.ipynb`` (see
    :attr:`name`); ``topic`` names its modules: ``solutions/<topic>.py`` (the reference),
    ``autograder/checks/<topic>.py`` (the check suites) and the test corpus
    ``tests/alternatives/<topic>.py``; a grade cell calls ``grade("<topic>.<graded name>", ...)``.
    ``graded`` lists the graded functions and classes, in the order their grade cells
    appear, with the autograded points of each (the sum of its suite's sub-checks).
    """

    number: int
    slug: str
    topic: str
    title: str
    graded: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        """The notebook's and the nbgrader assignment's name, e.g. ``"02_attention"``."""
        return f"{self.number:02d}_{self.slug}"

    @property
    def points(self) -> float:
        return sum(points for _, points in self.graded)

    @property
    def graded_names(self) -> list[str]:
        return [name for name, _ in self.graded]


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(
        1,
        "before_transformers",
        "sequence_models",
        "Before transformers: MLPs, CNNs and RNNs on sequences",
        (("rnn_forward", 7), ("hidden_state_jacobian_norms", 7)),
    ),
    Chapter(
        2,
        "attention",
        "attention",
        "Scaled dot-product attention",
        (("softmax", 3), ("scaled_dot_product_attention", 9), ("causal_mask", 2)),
    ),
    Chapter(
        3,
        "multi_head_attention",
        "multi_head_attention",
        "Multi-head attention",
        (("split_heads", 4), ("merge_heads", 4), ("MultiHeadAttention", 12)),
    ),
    Chapter(
        4,
        "positional_encoding",
        "positional_encoding",
        "Positional encoding",
        (("sinusoidal_positional_encoding", 5), ("apply_rotary_embedding", 12)),
    ),
    Chapter(
        5,
        "transformer_block",
        "transformer_block",
        "The transformer block",
        (("layer_norm", 6), ("FeedForward", 7), ("TransformerBlock", 11), ("count_parameters", 6)),
    ),
    Chapter(
        6,
        "pretraining",
        "pretraining",
        "Pretraining: masked language modelling versus next-token prediction",
        (
            ("shift_for_next_token", 3),
            ("language_model_loss", 7),
            ("mask_tokens", 10),
            ("CausalLM", 10),
            ("MaskedLM", 9),
        ),
    ),
    Chapter(
        7,
        "flash_attention",
        "flash_attention",
        "FlashAttention",
        (
            ("online_softmax_update", 6),
            ("flash_attention_forward", 10),
            ("flash_attention_backward", 9),
            ("FlashAttentionFunction", 7),
            ("flash_attention_triton", 6),
        ),
    ),
    Chapter(
        8,
        "beyond_quadratic",
        "beyond_quadratic",
        "Beyond quadratic attention, and scale",
        (
            ("sliding_window_mask", 4),
            ("positive_random_features", 4),
            ("performer_attention", 6),
            ("training_flops", 2),
            ("chinchilla_optimal", 3),
            ("fit_power_law", 3),
        ),
    ),
    Chapter(
        9,
        "generation",
        "generation",
        "The whole Transformer, and generation",
        (
            ("DecoderBlock", 8),
            ("Seq2SeqTransformer", 9),
            ("greedy_decode", 6),
            ("beam_search", 6),
            ("sample_next_token", 8),
            ("CachedSelfAttention", 7),
            ("grouped_query_attention", 5),
            ("kv_cache_bytes", 2),
        ),
    ),
)

BY_NAME: dict[str, Chapter] = {chapter.name: chapter for chapter in CHAPTERS}
BY_TOPIC: dict[str, Chapter] = {chapter.topic: chapter for chapter in CHAPTERS}


def earlier_topics(chapter: Chapter) -> list[str]:
    """Topics of the chapters before ``chapter``: their code is *given* to a later chapter
    (chapter 5 builds on chapter 3's ``MultiHeadAttention``); the graded chapter's own
    reference stays out of a submission's reach."""
    return [c.topic for c in CHAPTERS if c.number < chapter.number]
