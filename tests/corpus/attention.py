"""Chapter 2 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``)."""
from corpus import alternative, bug

ENTRIES = [
    bug("softmax", "exponentials not normalised", """
        def softmax(x, dim=-1):
            return (x - x.max(dim=dim, keepdim=True).values).exp()
    """, says="not divided by their sum"),
    alternative("softmax", "log-sum-exp", """
        import torch

        def softmax(x, dim=-1):
            return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
    """),
]
