"""Bits per dimension of a trained flow on a data split, with importance-sampled likelihoods."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sized

import torch

from ..flows.model import ImageFlow, bits_per_dim, images_of
from ..runtime import seeded

__all__ = ["IMAGES_PER_PASS", "log_likelihood_in_passes", "evaluate_bpd"]


#: Most images pushed through the flow at once when importance samples are stacked on a batch: past
#: this the feature maps fall out of a CPU's caches (the README's speed section has the measurements).
IMAGES_PER_PASS = 64


def log_likelihood_in_passes(
    model: ImageFlow, imgs: torch.Tensor, importance_samples: int, images_per_pass: int = IMAGES_PER_PASS
) -> torch.Tensor:
    """The estimate of :meth:`ImageFlow.log_likelihood`, with several draws stacked into one pass.

    The ``importance_samples`` draws of the dequantization noise go through the network as copies of
    the batch stacked together, up to ``images_per_pass`` images per pass, which keeps a small batch
    from leaving the machine idle. Returns one log-likelihood in nats per image.
    """
    if importance_samples < 1:
        raise ValueError(f"importance_samples must be at least 1, got {importance_samples}")
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    batch = imgs.shape[0]
    draws_per_pass = max(1, images_per_pass // max(batch, 1))
    estimates = []
    for start in range(0, importance_samples, draws_per_pass):
        draws = min(draws_per_pass, importance_samples - start)
        stacked = imgs.repeat(draws, 1, 1, 1) if draws > 1 else imgs
        estimates.append(model.log_likelihood(stacked).view(draws, batch))
    return torch.logsumexp(torch.cat(estimates), dim=0) - math.log(importance_samples)


def evaluate_bpd(
    model: ImageFlow,
    loader: Iterable,
    importance_samples: int = 8,
    seed: int | None = 42,
    progress: bool = False,
    desc: str = "bpd",
) -> float:
    """Mean bits per dimension over every image the loader yields (each image counts once).

    Each image's likelihood is the importance-sampled estimate of :meth:`ImageFlow.log_likelihood`
    with ``importance_samples`` dequantization draws (see :func:`log_likelihood_in_passes`). With a
    ``seed`` the draws are reproducible and the caller's random state is left as it was.
    Runs under ``torch.inference_mode`` on the model's device, in eval mode; ``progress`` shows a
    bar labelled ``desc``.
    """
    device = model.device
    was_training = model.training
    total, count = 0.0, 0
    batches: Iterable = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, total=len(loader) if isinstance(loader, Sized) else None, desc=desc, leave=False)
    model.eval()
    try:
        with seeded(seed, device), torch.inference_mode():
            for batch in batches:
                imgs = images_of(batch).to(device)
                bpd = bits_per_dim(log_likelihood_in_passes(model, imgs, importance_samples), model.dims)
                total += float(bpd.double().sum())
                count += imgs.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the loader yielded no images, so there is nothing to evaluate")
    return total / count
