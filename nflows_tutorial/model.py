"""``ImageFlow``: a stack of invertible layers on images, trained by maximum likelihood with Lightning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from .fused import compilation_works
from .networks import GatedConvNet
from .prior import standard_normal_log_prob

__all__ = ["ImageFlow", "bits_per_dim"]

LOG2_E = math.log2(math.e)


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
        fast: run the conditioners through :mod:`nflows_tutorial.fused`: channels-last memory and
            hand-written backward passes that recompute activations instead of storing them (same
            numbers, less time, about a third of the memory in training); ``False`` gives the plain
            autograd path, for debugging and side-by-side comparison.
        compile_networks: run the fast path's pointwise kernels through ``torch.compile`` (the first
            batch of each feature-map shape waits a few seconds for the compiler). Falls back to
            eager execution, with a warning, where compiling fails.
    """

    #: Most images pushed through the flow at once when importance samples are stacked on a batch.
    #: Past this the feature maps fall out of the CPU caches: on a 2-core CPU, scoring took 7.5 ms per
    #: image and draw in passes of 64 images, 9.7 ms in passes of 128.
    max_images_per_pass = 64

    def __init__(
        self,
        flows: Sequence[nn.Module],
        image_shape: Sequence[int] = (1, 28, 28),
        latent_shape: Sequence[int] | None = None,
        importance_samples: int = 8,
        lr: float = 1e-3,
        lr_gamma: float = 0.99,
        fast: bool = True,
        compile_networks: bool = True,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)
        self.image_shape = tuple(image_shape)
        self.latent_shape = tuple(image_shape if latent_shape is None else latent_shape)
        self.importance_samples = importance_samples
        self.lr = lr
        self.lr_gamma = lr_gamma
        self.fast = fast
        self.compile_networks = compile_networks

    @property
    def fast(self) -> bool:
        """Whether the speed-ups are on (see the class docstring); assign to switch."""
        return self._fast

    @fast.setter
    def fast(self, on: bool) -> None:
        memory_format = torch.channels_last if on else torch.contiguous_format
        for module in self.modules():
            if isinstance(module, GatedConvNet):
                module.fast = bool(on)
        self.to(memory_format=memory_format)
        self._fast = bool(on)

    @property
    def compile_networks(self) -> bool:
        """Whether the fast path's pointwise kernels run through ``torch.compile``; assign to switch.

        Reads ``False`` where compiling failed and the kernels fell back to eager execution.
        """
        return compilation_works() and any(m.compiled for m in self.modules() if isinstance(m, GatedConvNet))

    @compile_networks.setter
    def compile_networks(self, on: bool) -> None:
        for module in self.modules():
            if isinstance(module, GatedConvNet):
                module.compiled = bool(on)

    @property
    def dims(self) -> int:
        """Number of values per image (``C * H * W``), the denominator of bits per dimension."""
        return math.prod(self.image_shape)

    def _check_images(self, imgs: torch.Tensor) -> None:
        _check_image_batch(imgs, self.image_shape)

    def encode(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map integer images to latents; return ``(z, ldj)`` with one log-determinant per image.

        For a multi-scale model ``ldj`` already holds the prior log-density of the split-off channels.
        """
        self._check_images(imgs)
        dtype = next(self.parameters(), torch.empty(0)).dtype
        z, ldj = imgs, torch.zeros(imgs.shape[0], device=imgs.device, dtype=dtype)
        for flow in self.flows:
            z, ldj = flow(z, ldj)
        return z, ldj

    def log_likelihood(self, imgs: torch.Tensor, importance_samples: int = 1) -> torch.Tensor:
        """Return the per-image log-likelihood estimate in nats.

        With ``M = importance_samples`` draws of the dequantization noise the estimate is
        ``logsumexp_m log p(x + u_m) - log M``: a lower bound on ``log P(x)`` that tightens as ``M`` grows.
        Several draws go through the network in one batch, up to :attr:`max_images_per_pass` images.
        """
        _check_image_batch(imgs, self.image_shape)
        if importance_samples < 1:
            raise ValueError(f"importance_samples must be at least 1, got {importance_samples}")
        batch = imgs.shape[0]
        draws_per_pass = max(1, self.max_images_per_pass // max(batch, 1))
        estimates = []
        for start in range(0, importance_samples, draws_per_pass):
            draws = min(draws_per_pass, importance_samples - start)
            z, ldj = self.encode(imgs.repeat(draws, 1, 1, 1) if draws > 1 else imgs)
            estimates.append((ldj + standard_normal_log_prob(z)).view(draws, batch))
        log_px = torch.cat(estimates)
        if importance_samples == 1:
            return log_px[0]
        return torch.logsumexp(log_px, dim=0) - math.log(importance_samples)

    def bits_per_dim(self, imgs: torch.Tensor, importance_samples: int = 1) -> torch.Tensor:
        """Return the per-image negative log-likelihood in bits per dimension (see :meth:`log_likelihood`)."""
        return bits_per_dim(self.log_likelihood(imgs, importance_samples), self.dims)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Per-image bits per dimension with one dequantization draw."""
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
        dtype = next(self.parameters(), torch.empty(0)).dtype
        if z_init is None:
            z = torch.randn(shape, device=self.device, dtype=dtype, generator=generator)
        else:
            z = z_init.to(self.device, dtype)
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Run the layers backwards from a final latent ``z`` to integer images (split-off channels are drawn)."""
        log_det = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for layer in self.flows[::-1]:
            z, log_det = layer(z, log_det, reverse=True)
        return z

    # Lightning hooks ---------------------------------------------------------------------------------
    @staticmethod
    def _images(batch: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return batch if isinstance(batch, torch.Tensor) else batch[0]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        imgs = self._images(batch)
        loss = self.bits_per_dim(imgs).mean()
        self.log("train_bpd", loss, batch_size=imgs.shape[0], prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        imgs = self._images(batch)
        # Scores are float32 even in a mixed-precision run; sync_dist: under DDP every process sees a shard,
        # and the checkpoint callback must watch the global mean.
        with torch.autocast(imgs.device.type, enabled=False):
            bpd = self.bits_per_dim(imgs).mean()
        self.log("val_bpd", bpd, batch_size=imgs.shape[0], prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx: int) -> None:
        imgs = self._images(batch)
        with torch.autocast(imgs.device.type, enabled=False):
            bpd = self.bits_per_dim(imgs, self.importance_samples).mean()
        self.log("test_bpd", bpd, batch_size=imgs.shape[0], sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=self.lr_gamma)
        return [optimizer], [{"scheduler": scheduler, "interval": "epoch"}]
