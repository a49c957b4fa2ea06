"""Training loops for ensembles: the teacher on MNIST (cross-entropy on the digit logits) and
students distilled on uniform noise in [-1, 1] (KL between softmaxes on a slice of logits).

All models of an ensemble see the same batches (one shared data order, one shared noise
batch per step); they differ by their initialization. Each model's loss is its own batch
mean and the ensemble loss is the sum over models, so every model gets exactly the gradient
it would get alone. Noise is generated batch by batch from a seeded generator.
"""

import math
from dataclasses import dataclass

import torch
from loguru import logger

from sl.mnist.config import N_DIGITS
from sl.mnist.ensemble import MLPEnsemble
from sl.utils.progress_bar import tqdm


def make_adam(model: MLPEnsemble, lr: float) -> torch.optim.Adam:
    """Adam (default betas/eps) over an ensemble's parameters; fused kernel where available."""
    fused = model.params[0].device.type in ("cpu", "cuda")
    return torch.optim.Adam(model.params, lr=lr, fused=fused)


def _step(opt: torch.optim.Adam, model: MLPEnsemble, grads: list[torch.Tensor]) -> None:
    for p, g in zip(model.params, grads, strict=True):
        p.grad = g
    opt.step()
    opt.zero_grad(set_to_none=True)


def ce_digits_grad(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy on the digit logits of every model.

    Args:
        logits: [N, K, B] float32.
        y: labels [B].

    Returns:
        d loss / d logits [N, K, B] (zero on aux logits) and the mean loss over models.
    """
    n, _, b = logits.shape
    logp = torch.log_softmax(logits[:, :N_DIGITS], dim=1)
    onehot = torch.zeros_like(logp).scatter_(1, y.view(1, 1, b).expand(n, 1, b), 1.0)
    grad = torch.zeros_like(logits)
    grad[:, :N_DIGITS] = (logp.exp() - onehot) / b
    loss = -(logp * onehot).sum().item() / (n * b)
    return grad, loss


def kl_grad(
    student: torch.Tensor, teacher: torch.Tensor, cols: slice
) -> tuple[torch.Tensor, float]:
    """KL(softmax(teacher) || softmax(student)) over the logits `cols` of every model.

    Args:
        student: student logits [N, K, B] float32.
        teacher: teacher logits [N, K, B] float32.
        cols: which logits are distilled (aux only or all).

    Returns:
        d loss / d student logits [N, K, B] (zero outside `cols`) and the mean loss.
    """
    n, _, b = student.shape
    logp_s = torch.log_softmax(student[:, cols], dim=1)
    logp_t = torch.log_softmax(teacher[:, cols], dim=1)
    p_t = logp_t.exp()
    grad = torch.zeros_like(student)
    grad[:, cols] = (logp_s.exp() - p_t) / b
    loss = (p_t * (logp_t - logp_s)).sum().item() / (n * b)
    return grad, loss


def train_teacher(
    model: MLPEnsemble,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    compute_dtype: torch.dtype,
    gen: torch.Generator,
) -> None:
    """Train all models in place on (x [n, 784], y [n]) with cross-entropy on digit logits."""
    opt = make_adam(model, lr)
    n_batches = math.ceil(len(x) / batch_size)
    bar = tqdm(total=epochs * n_batches, desc="teacher", unit="step", leave=False)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
        loss = float("nan")
        for i in range(n_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            logits, cache = model.forward(x[idx], compute_dtype, keep=True)
            grad, loss = ce_digits_grad(logits, y[idx])
            assert cache is not None
            _step(opt, model, model.backward(cache, grad))
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}")
        logger.debug("teacher epoch {}/{}: loss {:.4f}", epoch + 1, epochs, loss)
    bar.close()


@dataclass
class Student:
    """A student ensemble and the logits it is distilled on."""

    name: str
    model: MLPEnsemble
    cols: slice


def distill_on_noise(
    teacher: MLPEnsemble,
    students: list[Student],
    epochs: int,
    images_per_epoch: int,
    batch_size: int,
    lr: float,
    compute_dtype: torch.dtype,
    gen: torch.Generator,
) -> None:
    """Distill every student in place on teacher logits for uniform noise images in [-1, 1].

    Each noise batch is generated once, the teacher runs once on it, and every student
    takes one Adam step on it; no more than one batch of noise exists at a time.
    """
    device = teacher.params[0].device
    in_dim = teacher.params[0].shape[1]
    opts = [make_adam(s.model, lr) for s in students]
    t_weights = teacher.cast(compute_dtype)  # the teacher is frozen: cast its weights once
    n_batches = math.ceil(images_per_epoch / batch_size)
    bar = tqdm(total=epochs * n_batches, desc="students", unit="step", leave=False)
    for epoch in range(epochs):
        losses = [float("nan")] * len(students)
        for i in range(n_batches):
            b = min(batch_size, images_per_epoch - i * batch_size)
            noise = torch.rand((b, in_dim), generator=gen, device=gen.device).to(device)
            noise.mul_(2.0).sub_(1.0)
            with torch.no_grad():
                t_logits, _ = teacher.forward(noise, compute_dtype, weights=t_weights)
            for j, (s, opt) in enumerate(zip(students, opts, strict=True)):
                logits, cache = s.model.forward(noise, compute_dtype, keep=True)
                grad, losses[j] = kl_grad(logits, t_logits, s.cols)
                assert cache is not None
                _step(opt, s.model, s.model.backward(cache, grad))
            bar.update()
            bar.set_postfix({s.name: f"{v:.4f}" for s, v in zip(students, losses, strict=True)})
        logger.debug(
            "students epoch {}/{}: KL {}",
            epoch + 1,
            epochs,
            {s.name: round(v, 5) for s, v in zip(students, losses, strict=True)},
        )
    bar.close()
