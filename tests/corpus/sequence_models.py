"""Chapter 1 answers: plausible bugs and correct alternatives (see ``corpus/__init__.py``)."""

from corpus import advised, alternative, bug

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
    advised(
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
        advice=("no_autograd",),
        says="computes gradients with autograd",
    ),
    advised(
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
        advice=("no_autograd",),
        says="computes gradients with autograd",
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
    bug(
        "rnn_forward",
        "reshape (B, T) to (T, B) instead of transpose",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, D = x.shape
            steps = x.reshape(T, B, D)
            h, states = h0, []
            for x_t in steps:
                h = torch.tanh(x_t @ W_xh + h @ W_hh + b)
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
        fails=["matches_reference_over_time", "last_state_is_h_T"],
    ),
    bug(
        "rnn_forward",
        "tanh only around the recurrent term",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = x[:, t] @ W_xh + torch.tanh(h @ W_hh) + b
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
        fails=["one_step_matches_formula", "matches_reference_over_time"],
    ),
    bug(
        "rnn_forward",
        "float32 buffer for the outputs",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, _ = x.shape
            outputs = torch.zeros(B, T, W_hh.shape[0])
            h = h0
            for t in range(T):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                outputs[:, t] = h
            return outputs, h
    """,
        fails=["float64_outputs_and_gradients"],
        says="dtype torch.float32",
    ),
    bug(
        "rnn_forward",
        "output width taken from D_in",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, D_in = x.shape
            outputs = torch.empty(B, T, D_in, dtype=x.dtype)
            h = h0
            for t in range(T):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                outputs[:, t] = h
            return outputs, h
    """,
        fails=["returns_outputs_and_last_state"],
    ),
    bug(
        "rnn_forward",
        "states detached (no gradient through time)",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b).detach()
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
        fails=["float64_outputs_and_gradients"],
        says="carry no gradient",
    ),
    bug(
        "rnn_forward",
        "torch.nn.RNN instead of the loop",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            rnn = nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True).to(x.dtype)
            with torch.no_grad():
                rnn.weight_ih_l0.copy_(W_xh.T)
                rnn.weight_hh_l0.copy_(W_hh.T)
                rnn.bias_ih_l0.copy_(b)
                rnn.bias_hh_l0.zero_()
            outputs, h_T = rnn(x, h0[None])
            return outputs, h_T[0]
    """,
        fails=("float64_outputs_and_gradients",),
        says="no gradient reaches W_xh",
    ),
    bug(
        "rnn_forward",
        "last step skipped",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1] - 1):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            states.append(h)
            return torch.stack(states, dim=1), h
    """,
        fails=["last_state_is_h_T"],
        says="the last input x_T was not read",
    ),
    bug(
        "rnn_forward",
        "every error swallowed, zeros returned",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            try:
                raise NotImplementedError()
            except Exception:
                return torch.zeros(x.shape[0], x.shape[1], h0.shape[1], dtype=x.dtype), torch.zeros_like(h0)
    """,
        fails=["matches_reference_over_time", "last_state_is_h_T"],
    ),
    alternative(
        "rnn_forward",
        "preallocated outputs in the input dtype, einsum",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, _ = x.shape
            outputs = x.new_empty(B, T, h0.shape[1])
            h = h0
            for t in range(T):
                h = torch.tanh(torch.einsum("bd,dh->bh", x[:, t], W_xh) + torch.einsum("bk,kh->bh", h, W_hh) + b)
                outputs[:, t] = h
            return outputs, outputs[:, -1]
    """,
    ),
    alternative(
        "rnn_forward",
        "time-major loop over unbind, bias added per step",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h = h0
            states = []
            for x_t in x.transpose(0, 1).unbind(0):
                h = (b + h @ W_hh + x_t @ W_xh).tanh()
                states.append(h)
            outputs = torch.stack(states, dim=0).transpose(0, 1)
            return outputs, h
    """,
    ),
    alternative(
        "rnn_forward",
        "torch.addmm and a list comprehension of inputs",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            projected = [torch.addmm(b, x[:, t], W_xh) for t in range(x.size(1))]
            h, outs = h0, []
            for p in projected:
                h = torch.tanh(p + torch.mm(h, W_hh))
                outs.append(h.unsqueeze(1))
            return torch.cat(outs, dim=1), h
    """,
    ),
    bug(
        "hidden_state_jacobian_norms",
        "W_hh not transposed in the step Jacobian",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(jac)]
            for s in range(len(states) - 1, 0, -1):
                jac = jac @ ((1 - states[s] ** 2)[:, None] * W_hh)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1])
    """,
        fails=["one_step_back_by_hand", "matches_autograd"],
        says="W_hh where W_hh^T belongs",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "derivative at the previous state h_{s-1}",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], [h0[0]]
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(jac)]
            for s in range(len(states) - 1, 1, -1):
                jac = jac @ ((1 - states[s - 1] ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1])
    """,
        fails=["one_step_back_by_hand", "matches_autograd"],
        says="uses h_{s-1}",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "tanh applied twice in the derivative",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(jac)]
            for s in range(len(states) - 1, 0, -1):
                jac = jac @ ((1 - torch.tanh(states[s]) ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1])
    """,
        fails=["one_step_back_by_hand", "matches_autograd"],
    ),
    bug(
        "hidden_state_jacobian_norms",
        "spectral norm instead of Frobenius",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(jac, ord=2)]
            for s in range(len(states) - 1, 0, -1):
                jac = jac @ ((1 - states[s] ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac, ord=2))
            return torch.stack(norms[::-1])
    """,
        fails=["shape_and_last_entry_is_identity", "matches_autograd"],
        says="spectral norms",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "one factor too many (d h_T / d h_{t-1})",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = []
            for s in range(len(states) - 1, -1, -1):
                jac = jac @ ((1 - states[s] ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1])
    """,
        fails=["shape_and_last_entry_is_identity", "matches_autograd"],
        says="off by one",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "normalised by sqrt(H)",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = h.shape[0]
            jac = torch.eye(H, dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(jac)]
            for s in range(len(states) - 1, 0, -1):
                jac = jac @ ((1 - states[s] ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1]) / H ** 0.5
    """,
        fails=["shape_and_last_entry_is_identity", "matches_autograd"],
        says="divided by sqrt(H)",
    ),
    bug(
        "hidden_state_jacobian_norms",
        "identity sized from D_in",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            h, states = h0[0], []
            for t in range(x.shape[1]):
                h = torch.tanh(x[0, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            jac = torch.eye(x.shape[2], W_hh.shape[0], dtype=h.dtype)
            norms = [torch.linalg.matrix_norm(torch.eye(W_hh.shape[0], dtype=h.dtype))]
            for s in range(len(states) - 1, 0, -1):
                jac = jac @ ((1 - states[s] ** 2)[:, None] * W_hh.T)
                norms.append(torch.linalg.matrix_norm(jac))
            return torch.stack(norms[::-1])
    """,
        fails=["matches_autograd"],
    ),
    alternative(
        "hidden_state_jacobian_norms",
        "diag_embed and a preallocated result",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            T = x.shape[1]
            h, states = h0, []
            for t in range(T):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h[0])
            H = W_hh.shape[0]
            norms = torch.empty(T, dtype=x.dtype)
            J = torch.eye(H, dtype=x.dtype)
            norms[T - 1] = torch.sqrt((J ** 2).sum())
            for t in range(T - 1, 0, -1):  # multiply by d h_{t+1} / d h_t
                J = J @ torch.diag(1 - states[t] ** 2) @ W_hh.T
                norms[t - 1] = torch.sqrt((J ** 2).sum())
            return norms
    """,
    ),
    alternative(
        "hidden_state_jacobian_norms",
        "transposed product (W_hh diag) built left to right",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            # (J_T ... J_{t+1})^T = J_{t+1}^T ... J_T^T, same Frobenius norm
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            H = W_hh.shape[0]
            G = torch.eye(H, dtype=h.dtype)
            out = [G.norm()]
            for s in reversed(range(1, len(states))):
                G = (W_hh * (1 - states[s] ** 2)) @ G
                out.insert(0, G.norm())
            return torch.stack(out)
    """,
    ),
    alternative(
        "hidden_state_jacobian_norms",
        "float64 internals, norm via einsum",
        """
        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            dtype = x.dtype
            x, h0, W_xh, W_hh, b = (t.double() for t in (x, h0, W_xh, W_hh, b))
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h[0])
            J = torch.eye(W_hh.shape[0], dtype=torch.float64)
            norms = [torch.einsum("ij,ij->", J, J).sqrt()]
            for s in states[:0:-1]:
                J = J @ (W_hh.T * (1 - s * s).unsqueeze(1))
                norms.append(torch.einsum("ij,ij->", J, J).sqrt())
            return torch.stack(norms).flip(0).to(dtype)
    """,
    ),
    bug(
        "rnn_forward",
        "h_0 used at every step",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            states = [torch.tanh(x[:, t] @ W_xh + h0 @ W_hh + b) for t in range(x.shape[1])]
            return torch.stack(states, dim=1), states[-1]
    """,
        fails=["matches_reference_over_time", "last_state_is_h_T"],
    ),
    bug(
        "rnn_forward",
        "stacked time-first, then reshaped to batch-first",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            return torch.stack(states).reshape(x.shape[0], x.shape[1], -1), h
    """,
        fails=["matches_reference_over_time"],
    ),
    alternative(
        "rnn_forward",
        "in-place tanh_ on its own pre-activations, F.linear",
        """
        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.size(1)):
                a = nn.functional.linear(x[:, t], W_xh.T, b) + h @ W_hh
                h = a.tanh_()
                states.append(h)
            return torch.stack(states, 1), states[-1]
    """,
    ),
]


# Issue 21's input classes, written from the notebook's docstrings: inputs in any memory layout,
# gradients asked for one input at a time, a batch or a sequence of one.
INPUT_CLASSES = [
    bug(
        "rnn_forward",
        "input projections of all steps at once, flattened with .view",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, D = x.shape
            projected = (x.view(B * T, D) @ W_xh).view(B, T, -1)
            h, states = h0, []
            for t in range(T):
                h = torch.tanh(projected[:, t] + h @ W_hh + b)
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
        says="view",
    ),
    bug(
        "rnn_forward",
        "gradients only when x requires grad (no_grad otherwise, to save memory)",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            with torch.set_grad_enabled(x.requires_grad):
                h, states = h0, []
                for t in range(x.shape[1]):
                    h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                    states.append(h)
                return torch.stack(states, dim=1), h
    """,
        says="gradient",
    ),
    bug(
        "rnn_forward",
        "the state written into a preallocated buffer with out= (breaks backward)",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, _ = x.shape
            outputs = torch.empty(B, T, h0.shape[1], dtype=x.dtype)
            h = h0
            for t in range(T):
                torch.tanh(x[:, t] @ W_xh + h @ W_hh + b, out=outputs[:, t])
                h = outputs[:, t]
            return outputs, h
    """,
        says="out=",
    ),
    bug(
        "rnn_forward",
        "squeezed states: a batch of one loses its axis",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            h, states = h0, []
            for t in range(x.shape[1]):
                h = torch.tanh(x[:, t] @ W_xh + h @ W_hh + b)
                states.append(h)
            return torch.stack(states, dim=1).squeeze(), h
    """,
        says="shape",
    ),
    alternative(
        "rnn_forward",
        "input projections of all steps with reshape, states written into a list",
        """
        import torch

        def rnn_forward(x, h0, W_xh, W_hh, b):
            B, T, D = x.shape
            projected = (x.reshape(B * T, D) @ W_xh).reshape(B, T, -1) + b
            h, states = h0, []
            for step in projected.unbind(1):
                h = torch.tanh(step + h @ W_hh)
                states.append(h)
            return torch.stack(states, dim=1), h
    """,
    ),
    bug(
        "hidden_state_jacobian_norms",
        "x.squeeze() for the batch of one: a sequence of one loses its time axis too",
        """
        import torch

        def hidden_state_jacobian_norms(x, h0, W_xh, W_hh, b):
            steps, h = x.squeeze(), h0.squeeze(0)
            states = []
            for t in range(steps.shape[0]):
                h = torch.tanh(steps[t] @ W_xh + h @ W_hh + b)
                states.append(h)
            J = torch.eye(W_hh.shape[0], dtype=x.dtype)
            norms = [torch.linalg.norm(J)]
            for t in range(len(states) - 1, 0, -1):
                J = J @ (torch.diag(1 - states[t] ** 2) @ W_hh.T)
                norms.append(torch.linalg.norm(J))
            return torch.stack(norms[::-1])
    """,
    ),
]
ENTRIES += INPUT_CLASSES
