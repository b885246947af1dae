"""Images from a trained flow: samples, latent interpolations, and a PNG grid to keep them in."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..flows.model import ImageFlow
from ..io.files import atomic_write
from ..runtime import seeded

__all__ = ["draw_samples", "INTERPOLATION_PATHS", "latent_path", "interpolate", "image_grid", "save_image_grid"]


def draw_samples(model: ImageFlow, n: int = 64, seed: int | None = None) -> torch.Tensor:
    """Draw ``n`` int32 images ``[n, C, H, W]``; a ``seed`` makes the draw repeatable on the same device."""
    if n < 1:
        raise ValueError(f"the number of samples must be positive, got {n}")
    # The global generators, not a private one: a multi-scale model draws its split-off channels from them.
    with seeded(seed, model.device):
        return model.sample(n)


INTERPOLATION_PATHS = ("linear", "spherical")


def latent_path(z1: torch.Tensor, z2: torch.Tensor, num_steps: int, path: str = "linear") -> torch.Tensor:
    """``num_steps`` latents from ``z1`` to ``z2`` (same shape), stacked on a new first dimension.

    ``"linear"`` mixes ``(1 - t) z1 + t z2``; its midpoints have a smaller norm than either end
    (for two independent Gaussian latents, about ``1/sqrt(2)`` of it at ``t = 1/2``), where a
    standard normal in many dimensions almost never puts a draw. ``"spherical"`` turns ``z1`` into
    ``z2`` along the great circle through them and scales the norm linearly between the two ends,
    so every point has a norm a prior draw could have.
    """
    if path not in INTERPOLATION_PATHS:
        raise ValueError(f"path must be one of {INTERPOLATION_PATHS}, got {path!r}")
    if num_steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps (the two ends), got {num_steps}")
    t = torch.linspace(0, 1, num_steps, device=z1.device, dtype=z1.dtype).view(-1, *([1] * z1.dim()))
    if path == "linear":
        return (1 - t) * z1 + t * z2
    n1, n2 = z1.norm(), z2.norm()
    u1, u2 = z1 / n1, z2 / n2
    omega = torch.arccos((u1 * u2).sum().clamp(-1, 1))
    if omega < 1e-6:  # (nearly) the same direction: the great circle degenerates to the line
        direction = (1 - t) * u1 + t * u2
    else:
        direction = (torch.sin((1 - t) * omega) * u1 + torch.sin(t * omega) * u2) / torch.sin(omega)
    return direction * ((1 - t) * n1 + t * n2)


def interpolate(
    model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int = 8, path: str = "linear"
) -> torch.Tensor:
    """Decode ``num_steps`` evenly spaced points on a path between the latents of two images.

    Both images (integer tensors ``[C, H, W]``) are encoded with one draw of the dequantization
    noise each (so their latents are one point of the cell of latents that quantizes back to the
    image), joined by :func:`latent_path` (``"linear"`` or ``"spherical"``) and decoded with
    ``sample(z_init=...)``. A multi-scale model's ``encode`` keeps only the final latent and draws
    its split-off channels afresh when decoding, so the ends are close to, not copies of, the
    images. Returns int32 ``[num_steps, C, H, W]``.
    """
    for name, img in (("img1", img1), ("img2", img2)):
        if img.dim() != 3:
            raise ValueError(f"{name} must be one image [C, H, W], got shape {list(img.shape)}")
    imgs = torch.stack([img1, img2]).to(model.device)
    with torch.inference_mode():
        z, _ = model.encode(imgs)
        z_path = latent_path(z[0], z[1], num_steps, path)
    return model.sample(z_path.shape, z_init=z_path)


def image_grid(imgs: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Tile integer images ``[N, C, H, W]`` (0..255) into one uint8 image ``[C, H', W']`` with ``nrow`` per row."""
    from torchvision.utils import make_grid

    if imgs.dim() != 4 or imgs.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch of images [N, C, H, W], got shape {list(imgs.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow must be positive, got {nrow}")
    grid = make_grid(imgs.detach().cpu().to(torch.float32) / 255.0, nrow=nrow, padding=padding, pad_value=0.5)
    if imgs.shape[0] == 1:  # make_grid returns a lone image without the frame it gives each image of a batch
        grid = torch.nn.functional.pad(grid, (padding,) * 4, value=0.5)
    return (grid * 255).round().clamp(0, 255).to(torch.uint8)


def save_image_grid(imgs: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Write integer images ``[N, C, H, W]`` as one PNG grid at ``path`` (written whole or not at all)."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the image grid is written as PNG; give a path ending in .png, got {path.name!r}")
    grid = image_grid(imgs, nrow=nrow)
    array = grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    # make_grid repeats a single channel three times; keep one so that the PNG is greyscale.
    if array.ndim == 3 and imgs.shape[1] == 1:
        array = array[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, tmp.open("wb") as out:
        Image.fromarray(array).save(out, format="PNG")
    return path
