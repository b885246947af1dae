"""``ImageFlow``: a stack of invertible layers on images, trained by maximum likelihood with Lightning."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from torch import nn

from .layer import FlowLayer
from .prior import standard_normal_log_prob

__all__ = ["ImageFlow", "bits_per_dim", "images_of"]

LOG2_E = math.log2(math.e)


def _modules(flows: Sequence[FlowLayer]) -> list[nn.Module]:
    """The layers as modules (so their parameters are registered), refusing anything that is not one."""
    for i, layer in enumerate(flows):
        if not isinstance(layer, nn.Module):
            raise TypeError(
                f"flows[{i}] is a {type(layer).__name__}, not a torch.nn.Module; write each layer as a Module "
                f"whose forward(z, ldj, reverse=False) returns (z, ldj)"
            )
    return [layer for layer in flows if isinstance(layer, nn.Module)]


def bits_per_dim(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    """Convert log-likelihoods in nats to bits per dimension: ``-log p(x) * log2(e) / dims``."""
    return -log_px * (LOG2_E / dims)


def _check_image_batch(imgs: torch.Tensor, image_shape: tuple[int, ...]) -> None:
    """Refuse anything but a non-empty batch ``[N, *image_shape]`` of images."""
    if not isinstance(imgs, torch.Tensor):
        raise TypeError(f"expected a tensor of images, got a {type(imgs).__name__}")
    if imgs.dim() != 4 or tuple(imgs.shape[1:]) != image_shape:
        raise ValueError(
            f"this model takes images of shape [batch, {', '.join(map(str, image_shape))}], got {list(imgs.shape)}"
        )
    if imgs.shape[0] == 0:
        raise ValueError("got a batch of 0 images; pass at least one image")


def images_of(batch: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The images of a loader's batch, which is either the images or ``(images, labels)``."""
    return batch if isinstance(batch, torch.Tensor) else batch[0]


Method = TypeVar("Method", bound=Callable[..., Any])


def _checks_images(method: Method) -> Method:
    """Check the image batch (and ``importance_samples``) where a call enters the model from outside.

    Calls made from inside a checked call (``log_likelihood`` encoding each draw) are not checked again.
    """

    @functools.wraps(method)
    def entry(self: ImageFlow, imgs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._checking:
            return method(self, imgs, *args, **kwargs)
        _check_image_batch(imgs, self.image_shape)
        samples = kwargs.get("importance_samples", args[0] if args else 1)
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise ValueError(f"importance_samples must be a whole number of at least 1, got {samples!r}")
        self._checking = True
        try:
            return method(self, imgs, *args, **kwargs)
        finally:
            self._checking = False

    return entry  # type: ignore[return-value]


def _sample_shape(shape: int | Sequence[int], latent_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The latent shape ``[N, *latent_shape]`` asked for by a batch size or a full shape, with ``N >= 1``."""
    if isinstance(shape, bool) or not isinstance(shape, (int, Sequence, torch.Size)):
        raise TypeError(f"shape must be a number of images or a latent shape, got {shape!r}")
    full = (shape, *latent_shape) if isinstance(shape, int) else tuple(shape)
    expected = ", ".join(map(str, latent_shape))
    if full[1:] != latent_shape:
        raise ValueError(f"this model samples latents of shape [N, {expected}], got {list(full)}")
    if full[0] < 1:
        raise ValueError(f"the number of images to sample must be positive, got {full[0]}")
    return full


def _check_z_init(z_init: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    """Refuse a starting latent of another shape than the one asked for, or with NaN or infinite values."""
    if z_init is None:
        return
    if tuple(z_init.shape) != shape:
        raise ValueError(f"z_init has shape {list(z_init.shape)}, but the sample asked for has shape {list(shape)}")
    if not bool(torch.isfinite(z_init).all()):
        raise ValueError("z_init holds NaN or infinite values, which decode to no image; pass finite latents")


class ImageFlow(pl.LightningModule):
    r"""Normalizing flow on integer images: ``flows[0]`` dequantizes, the rest map to a normal prior.

    .. math:: \log p(x) = \log \mathcal{N}(f(x); 0, I) + \log|\det \partial f / \partial x|

    Arguments:
        flows: the invertible layers, applied in order from image to latent.
        image_shape: ``(C, H, W)`` of the images the model accepts.
        latent_shape: ``(C, H, W)`` of the latent that :meth:`sample` starts from.
        importance_samples: dequantization draws averaged per image in :meth:`test_step`.
        lr: Adam learning rate. lr_gamma: factor applied to it after every epoch.
    """

    def __init__(
        self,
        flows: Sequence[FlowLayer],
        image_shape: Sequence[int] = (1, 28, 28),
        latent_shape: Sequence[int] | None = None,
        importance_samples: int = 8,
        lr: float = 1e-3,
        lr_gamma: float = 0.99,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList(_modules(flows))
        self.image_shape = tuple(image_shape)
        self.latent_shape = tuple(image_shape if latent_shape is None else latent_shape)
        self.importance_samples = importance_samples
        self.lr = lr
        self.lr_gamma = lr_gamma
        self._checking = False

    @property
    def dims(self) -> int:
        """Number of values per image (``C * H * W``), the denominator of bits per dimension."""
        return math.prod(self.image_shape)

    @property
    def param_dtype(self) -> torch.dtype:
        """The dtype of the parameters, which latents and log-determinants take (``float64`` after ``.double()``)."""
        return next(self.parameters(), torch.empty(0)).dtype

    @_checks_images
    def encode(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map integer images to latents; return ``(z, ldj)`` with one log-determinant per image.

        For a multi-scale model ``ldj`` already holds the prior log-density of the split-off channels.
        """
        z, ldj = imgs, torch.zeros(imgs.shape[0], device=imgs.device, dtype=self.param_dtype)
        for flow in self.flows:
            z, ldj = flow(z, ldj)
        return z, ldj

    @_checks_images
    def log_likelihood(self, imgs: torch.Tensor, importance_samples: int = 1) -> torch.Tensor:
        """Return the per-image log-likelihood estimate in nats.

        Each of the ``M = importance_samples`` draws of the dequantization noise ``u_m`` gives
        ``log p(x + u_m) = log N(f(x + u_m)) + ldj``; the estimate is their log-mean-exp,
        ``logsumexp_m log p(x + u_m) - log M``: a lower bound on ``log P(x)`` that tightens as ``M`` grows.
        """
        draws = []
        for _ in range(importance_samples):
            z, ldj = self.encode(imgs)
            draws.append(ldj + standard_normal_log_prob(z))
        return torch.logsumexp(torch.stack(draws), dim=0) - math.log(importance_samples)

    def bits_per_dim(self, imgs: torch.Tensor, importance_samples: int = 1) -> torch.Tensor:
        """Return the per-image negative log-likelihood in bits per dimension (see :meth:`log_likelihood`)."""
        return bits_per_dim(self.log_likelihood(imgs, importance_samples), self.dims)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Per-image bits per dimension with one dequantization draw (the training loss).

        Unlike a layer's ``forward``, which maps data to latent (:meth:`encode` does that here), calling
        the model scores images, as a ``LightningModule`` that is called on a batch usually does.
        """
        return self.bits_per_dim(imgs)

    @torch.inference_mode()
    def sample(
        self, shape: int | Sequence[int], z_init: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw images: ``shape`` is a batch size or a full latent shape ``[N, *latent_shape]``.

        ``z_init`` replaces the prior draw of the final latent (split-off channels are still drawn).
        Returns int32 images in ``0..255`` on the model's device.
        """
        shape = _sample_shape(shape, self.latent_shape)
        _check_z_init(z_init, shape)
        if z_init is None:
            z = torch.randn(shape, device=self.device, dtype=self.param_dtype, generator=generator)
        else:
            z = z_init.to(self.device, self.param_dtype)
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Run the layers backwards from a final latent ``z`` to integer images (split-off channels are drawn)."""
        log_det = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for layer in reversed(self.flows):
            z, log_det = layer(z, log_det, reverse=True)
        return z

    # Lightning hooks ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        imgs = images_of(batch)
        loss = self.bits_per_dim(imgs).mean()
        self.log("train_bpd", loss, batch_size=imgs.shape[0], prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        imgs = images_of(batch)
        # Scores are float32 even in a mixed-precision run; sync_dist: under DDP every process sees a shard,
        # and the checkpoint callback must watch the global mean.
        with torch.autocast(imgs.device.type, enabled=False):
            bpd = self.bits_per_dim(imgs).mean()
        self.log("val_bpd", bpd, batch_size=imgs.shape[0], prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx: int) -> None:
        imgs = images_of(batch)
        with torch.autocast(imgs.device.type, enabled=False):
            bpd = self.bits_per_dim(imgs, self.importance_samples).mean()
        self.log("test_bpd", bpd, batch_size=imgs.shape[0], sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=self.lr_gamma)
        return [optimizer], [{"scheduler": scheduler, "interval": "epoch"}]
