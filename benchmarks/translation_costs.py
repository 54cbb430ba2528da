"""Benchmark (not a test): how long the Chinese edition takes to translate a message that carries
a learner's long text, in the two forms a learner controls: an exception's message, quoted by
``protocol.describe_exception`` (up to ``protocol.MAX_ERROR_CHARS`` of it), and a message that is
all the learner's own (what ``messages.translate`` reads within ``messages.SECONDS`` or leaves
English).

    .venv/bin/python benchmarks/translation_costs.py
"""

import time

from autograder import messages
from autograder.protocol import describe_exception

TEXTS = {  # the shapes that once made the reading recurse sentence by sentence
    "dots": ". " * 1990,
    "semicolons": "x; " * 1300,
    "known phrases": "the weights are wrong; " * 170,
    "unknown words": "zzz qqq. " * 440,
}


def raised(text: str) -> str:
    """What a check reports when the learner's code raises ValueError(text) in cell 3."""
    try:
        exec(compile("raise ValueError(text)", "<cell 3>", "exec"), {"text": text})
    except ValueError as error:
        return describe_exception("scaled_dot_product_attention", error)


def timed(message: str) -> tuple[float, bool]:
    start = time.monotonic()
    translation = messages.translate(message, "zh")
    return time.monotonic() - start, translation.complete


def main():
    print(f"deadline per message: {messages.SECONDS} s")
    print(f"{'text':15} {'chars':>6} {'quoted (s)':>11} {'complete':>9} {'bare (s)':>9} {'complete':>9}")
    for name, text in TEXTS.items():
        text = text[:3900]
        quoted, quoted_complete = timed(raised(text))
        bare, bare_complete = timed(text)
        print(f"{name:15} {len(text):6} {quoted:11.3f} {quoted_complete!s:>9} {bare:9.3f} {bare_complete!s:>9}")


if __name__ == "__main__":
    main()
