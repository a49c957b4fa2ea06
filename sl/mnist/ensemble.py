"""N independent MLPs 784-H-H-K stored as stacked weights and run as one batched model.

Weights are shaped [N, in, out] (biases [N, out]) and kept in float32; forward and backward
are written out by hand (no autograd) so that every matmul is one large GEMM or one `bmm`:
all N models see the same input batch x [B, 784], so layer 1 for all models is a single
GEMM [N*H, 784] @ [784, B]; layers 2 and 3 are `bmm`s over the model axis. Activations are
kept feature-major, [N, features, B], so no transposes of activations are needed.
Matmuls run in `compute_dtype` (bfloat16 or float32); gradients come back in float32.
"""

from dataclasses import dataclass

import numpy as np
import torch

from sl.mnist.config import N_DIGITS


def make_generator(seed: int, stream: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator for one named random stream of an experiment seed."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def _uniform(shape: tuple[int, ...], bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


def _relu_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """grad where the ReLU output is positive, else 0 (one fused pass)."""
    return torch.ops.aten.threshold_backward(grad, out, 0)


@dataclass
class ForwardCache:
    """What the backward pass needs: input and the two ReLU outputs (compute dtype)."""

    x: torch.Tensor  # [B, D]
    a1: torch.Tensor  # [N, H, B]
    a2: torch.Tensor  # [N, H, B]
    w2: torch.Tensor  # [N, H, H] compute-dtype copy
    w3: torch.Tensor  # [N, H, K] compute-dtype copy


class MLPEnsemble:
    """N MLPs with ReLU, trained together; model n is slice n of every parameter."""

    def __init__(self, params: list[torch.Tensor]):
        """Wrap parameters [w1 [N,D,H], b1 [N,H], w2 [N,H,H], b2, w3 [N,H,K], b3 [N,K]]."""
        self.params = params

    @classmethod
    def init(
        cls, n_models: int, n_aux: int, hidden: int, seed: int, stream: int, in_dim: int = 784
    ) -> "MLPEnsemble":
        """PyTorch `nn.Linear` default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), on CPU.

        Auxiliary output columns are drawn one at a time from their own stream, so the first
        m of them are the same whatever `n_aux` >= m is: runs with different m share the hidden
        layers and the digit head, and differ only by the extra aux columns.
        """
        gen = make_generator(seed, stream)
        n, h = n_models, hidden
        b_in, b_h = in_dim**-0.5, h**-0.5
        w1, b1 = _uniform((n, in_dim, h), b_in, gen), _uniform((n, h), b_in, gen)
        w2, b2 = _uniform((n, h, h), b_h, gen), _uniform((n, h), b_h, gen)
        w3 = [_uniform((n, h, N_DIGITS), b_h, gen)]
        b3 = [_uniform((n, N_DIGITS), b_h, gen)]
        aux_gen = make_generator(seed, stream + 1)
        for _ in range(n_aux):
            w3.append(_uniform((n, h, 1), b_h, aux_gen))
            b3.append(_uniform((n, 1), b_h, aux_gen))
        return cls([w1, b1, w2, b2, torch.cat(w3, dim=2), torch.cat(b3, dim=1)])

    @property
    def n_models(self) -> int:
        """Number of models N."""
        return self.params[0].shape[0]

    @property
    def n_outputs(self) -> int:
        """Logits per model K (10 digits + m aux)."""
        return self.params[4].shape[2]

    def to(self, device: str | torch.device) -> "MLPEnsemble":
        """A copy on `device`."""
        return MLPEnsemble([p.to(device, copy=True) for p in self.params])

    def clone(self, n_outputs: int | None = None) -> "MLPEnsemble":
        """A copy, optionally keeping only the first `n_outputs` logits."""
        k = self.n_outputs if n_outputs is None else n_outputs
        w1, b1, w2, b2, w3, b3 = self.params
        out = [w1, b1, w2, b2, w3[:, :, :k], b3[:, :k]]
        return MLPEnsemble([p.clone().contiguous() for p in out])

    def cast(self, compute_dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The weights in the layout and dtype `forward` uses (cache them for a frozen model).

        Returns:
            (w1^T [N*H, D], b1 [N*H, 1], w2 [N, H, H], b2 [N, H, 1], w3 [N, H, K], b3 [N, K, 1]).
        """
        w1, b1, w2, b2, w3, b3 = self.params
        n, d, h = w1.shape
        cd = compute_dtype
        w1t = torch.empty((n, h, d), dtype=cd, device=w1.device)
        w1t.copy_(w1.transpose(1, 2))  # cast + transpose in one pass
        return (
            w1t.view(n * h, d),
            b1.reshape(n * h, 1).to(cd),
            w2.to(cd),
            b2.unsqueeze(2).to(cd),
            w3.to(cd),
            b3.unsqueeze(2).to(cd),
        )

    def forward(
        self,
        x: torch.Tensor,
        compute_dtype: torch.dtype,
        keep: bool = False,
        weights: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, ForwardCache | None]:
        """Logits of all models for one shared batch.

        Args:
            x: inputs [B, 784], float32.
            compute_dtype: dtype of the matmuls.
            keep: also return what `backward` needs.
            weights: `self.cast(compute_dtype)`, if already computed.

        Returns:
            logits float32 [N, K, B] (feature-major) and the cache (or None).
        """
        w1t, b1, w2, b2, w3, b3 = weights or self.cast(compute_dtype)
        n, h = self.n_models, w2.shape[1]
        xc = x.to(compute_dtype)
        a1 = torch.addmm(b1, w1t, xc.t()).view(n, h, -1).relu_()  # [N, H, B]
        a2 = torch.baddbmm(b2, w2.transpose(1, 2), a1).relu_()  # [N, H, B]
        z3 = torch.baddbmm(b3, w3.transpose(1, 2), a2).float()  # [N, K, B]
        return z3, (ForwardCache(xc, a1, a2, w2, w3) if keep else None)

    @staticmethod
    def backward(cache: ForwardCache, grad_logits: torch.Tensor) -> list[torch.Tensor]:
        """Gradients (float32, shaped like `params`) given d loss / d logits [N, K, B]."""
        n, h, _ = cache.a1.shape
        g3 = grad_logits.to(cache.a2.dtype)
        gw3 = torch.bmm(cache.a2, g3.transpose(1, 2))
        g2 = _relu_backward(torch.bmm(cache.w3, g3), cache.a2)
        gw2 = torch.bmm(cache.a1, g2.transpose(1, 2))
        g1 = _relu_backward(torch.bmm(cache.w2, g2), cache.a1)
        gw1_t = torch.mm(g1.view(n * h, -1), cache.x).view(n, h, -1)  # [N, H, D]
        gw1 = torch.empty((n, gw1_t.shape[2], h), dtype=torch.float32, device=g1.device)
        gw1.copy_(gw1_t.transpose(1, 2))
        return [
            gw1,
            g1.sum(2).float(),  # bf16 sums accumulate in fp32 internally
            gw2.float(),
            g2.sum(2).float(),
            gw3.float(),
            grad_logits.sum(2),
        ]

    @torch.no_grad()
    def accuracy(
        self, x: torch.Tensor, y: torch.Tensor, compute_dtype: torch.dtype, chunk: int = 2000
    ) -> torch.Tensor:
        """Per-model accuracy [N] (fraction) of the digit logits on (x [n, 784], y [n])."""
        correct = torch.zeros(self.n_models, dtype=torch.int64, device=x.device)
        for i in range(0, len(x), chunk):
            logits, _ = self.forward(x[i : i + chunk], compute_dtype)
            pred = logits[:, :N_DIGITS].argmax(dim=1)  # [N, b]
            correct += (pred == y[i : i + chunk]).sum(dim=1)
        return correct.double() / len(x)
