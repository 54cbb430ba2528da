"""Chapter 1 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``)."""

from corpus import alternative, bug

RNN_LOOP = """
    import torch

    def rnn_forward(x, h0, W_xh, W_hh, b):
        h, states = {start}, []
        for t in range(x.shape[1]):
            h = {step}
            states.append(h)
        return torch.stack({stacked}, dim=1), h
"""


def rnn_loop(step="torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)", start="h0", stacked="states"):
    return RNN_LOOP.format(step=step, start=start, stacked=stacked)


ENTRIES = [
    bug(
        "rnn_forward",
        "W_hh transposed",
        rnn_loop(step="torch.tanh(x[:, t] @ W_xh + h @ W_hh.T + b)"),
        fails=("one_step_matches_formula", "matches_reference_over_time"),
        says="W_hh transposed",
    ),
    bug(
        "rnn_forward",
        "bias missing",
        rnn_loop(step="torch.tanh(x[:, t] @ W_xh + h @ W_hh)"),
        fails=("matches_reference_over_time",),
        says="bias b is not added",
    ),
    bug(
        "rnn_forward",
        "h0 ignored",
        rnn_loop(start="torch.zeros_like(h0)"),
        fails=("one_step_matches_formula", "matches_reference_over_time"),
        says="h0 is ignored",
    ),
    bug(
        "rnn_forward",
        "outputs hold h_0..h_{T-1}",
        rnn_loop(stacked="[h0] + states[:-1]"),
        fails=("matches_reference_over_time",),
        says="it holds h_0..h_{T-1}",
    ),
    bug(
        "rnn_forward",
        "tanh written with exp",
        rnn_loop(
            step="(torch.exp(2 * (x[:, t] @ W_xh + h @ W_hh + b)) - 1) / (torch.exp(2 * (x[:, t] @ W_xh + h @ W_hh + b)) + 1)"
        ),
        fails=("long_saturated_sequence_matches_torch_rnn",),
        says="overflows",
    ),
    bug(
        "rnn_forward",
        "updates h0 in place",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h.copy_(torch.tanh(x[:, t] @ W_xh + h @ W_hh + b))
                states.append(h.clone())
            return torch.stack(states, dim=1), h
    """,
        fails=("one_step_matches_formula",),
        says="in place",
    ),
    alternative(
        "rnn_forward",
        "preallocated outputs, addmm, unbind over time",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            outputs = x.new_empty(x.shape[0], x.shape[1], W_hh.shape[0])
            h = h0
            for t, x_t in enumerate(x.unbind(dim=1)):
                h = torch.tanh(torch.addmm(b, x_t, W_xh) + torch.mm(h, W_hh))
                outputs[:, t] = h
            return outputs, outputs[:, -1]
    """,
    ),
    alternative(
        "rnn_forward",
        "time-first einsum in float64",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            inputs = torch.einsum("btd,dh->tbh", x.double(), W_xh.double()) + b.double()
            h, states = h0.double(), []
            for a in inputs:
                h = torch.tanh(a + torch.einsum("bh,hk->bk", h, W_hh.double()))
                states.append(h)
            outputs = torch.stack(states).transpose(0, 1).to(x.dtype)
            return outputs, outputs[:, -1].clone()
    """,
    ),
    bug(
        "hidden_state_jacobian_norms",
        "autograd.functional.jacobian",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            states, _ = rnn_forward_by_hand(x, h0, W_xh, W_hh, b)
            T = x.shape[1]
            norms = []
            for t in range(1, T + 1):
                def final(h, t=t):
                    for s in range(t, T):
                        h = torch.tanh(x[:, s] @ W_xh + h @ W_hh + b)
                    return h
                jac = torch.autograd.functional.jacobian(final, states[:, t - 1])
                norms.append(jac[0, :, 0].norm())
            return torch.stack(norms)

        def rnn_forward_by_hand(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
        fails=("matches_autograd", "long_sequence_matches_reference"),
        says="autograd",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "autograd.grad row by row",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0.detach().clone().requires_grad_(True), []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            rows = [torch.autograd.grad(h[0, i], states, retain_graph=True) for i in range(h.shape[1])]
            return torch.stack([torch.cat([row[t] for row in rows]).norm() for t in range(len(states))]).detach()
    """,
        fails=("matches_autograd",),
        says="autograd",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "tanh derivative forgotten",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            T, H = x.shape[1], W_hh.shape[0]
            product, norms = torch.eye(H), [torch.eye(H).norm()]
            for s in range(T - 1):
                product = product @ W_hh.T
                norms.append(product.norm())
            return torch.stack(norms[::-1])
    """,
        fails=("matches_autograd",),
        says="tanh derivative is missing",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "Jacobians multiplied in the wrong order",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h[0])
            H = W_hh.shape[0]
            product, norms = torch.eye(H), [torch.eye(H).norm()]
            for s in range(len(states) - 1, 0, -1):
                product = ((1 - states[s] ** 2)[:, None] * W_hh.T) @ product
                norms.append(product.norm())
            return torch.stack(norms[::-1])
    """,
        fails=("matches_autograd",),
        says="wrong order",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "entries in reverse order",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h[0])
            H = W_hh.shape[0]
            product, norms = torch.eye(H), [torch.eye(H).norm()]
            for s in range(len(states) - 1, 0, -1):
                product = product @ ((1 - states[s] ** 2)[:, None] * W_hh.T)
                norms.append(product.norm())
            return torch.stack(norms)
    """,
        fails=("matches_autograd",),
        says="reverse order",
    ),
    alternative(
        "hidden_state_jacobian_norms",
        "explicit diag, transposed product built from the left",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            x, h0, W_xh, W_hh, b = (a.double() for a in (x, h0, W_xh, W_hh, b))
            h, states = h0[0], []
            for x_t in x[0]:
                h = torch.tanh(x_t @ W_xh + h @ W_hh + b)
                states.append(h)
            # ||A||_F = ||A^T||_F: build (d h_T / d h_t)^T = J_{t+1}^T ... J_T^T, one factor on the LEFT per step back
            transposed = torch.eye(W_hh.shape[0], dtype=torch.float64)
            norms = [torch.linalg.norm(transposed)]
            for s in reversed(range(1, len(states))):
                step = torch.diag(1 - states[s] ** 2) @ W_hh.T
                transposed = step.T @ transposed
                norms.append(torch.linalg.norm(transposed))
            return torch.tensor(norms[::-1]).float()
    """,
    ),
    alternative(
        "hidden_state_jacobian_norms",
        "Jacobians from the sech^2 of the pre-activations",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, pre = h0, []
            for t in range(x.shape[1]):
                a = x[:, t] @ W_xh + h @ W_hh + b
                pre.append(a[0])
                h = torch.tanh(a)
            T = len(pre)
            norms = torch.empty(T)
            product = torch.eye(W_hh.shape[0])
            norms[T - 1] = torch.sqrt((product ** 2).sum())
            for t in range(T - 1, 0, -1):  # t: the state index whose Jacobian d h_T / d h_t comes next
                derivative = 1 / torch.cosh(pre[t]) ** 2
                product = product @ (derivative.unsqueeze(1) * W_hh.t())
                norms[t - 1] = torch.sqrt((product ** 2).sum())
            return norms
    """,
    ),
]
