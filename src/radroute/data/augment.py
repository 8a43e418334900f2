"""Training augmentation presets of the published anatomy classifiers.

``build_augmentation(name, size)`` returns a callable on a float tensor (1, S, S) in [0, 1]
(before normalisation; padding and filled-in areas are 0 = black). torchvision.transforms.v2
does everything it has; written here are only what it lacks: thin-plate-spline warping
(:class:`RandomTPS`), exact 90-degree and fixed-angle rotations, 8-direction shifts, pixel
spread and a median filter.

* ``roth2015`` (Roth et al. 2015): random translation, rotation, and a non-rigid thin-plate
  spline deformation driven by random displacements of a grid of control points.
* ``rajkomar2016`` (Rajkomar et al. 2016): each image gets one of: unchanged, horizontal flip,
  vertical flip, rotation by 90/180/270 degrees, rotation by +-2 degrees, a 3-pixel shift in one of
  8 directions, pixel spread, 3x3 median-neighbourhood noise reduction, random Gaussian noise.
* ``menkovski2015`` (Menkovski et al. 2015): random resized crop with stretch (aspect change),
  rotation, translation, shear and horizontal flip.
* ``none``: identity.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from radroute.errors import InvalidConfigError

AUGMENTATIONS = ("none", "roth2015", "rajkomar2016", "menkovski2015")


# ---------------------------------------------------------------------------------------------
# thin-plate spline
# ---------------------------------------------------------------------------------------------
def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    """U(r) = r^2 log r^2, with U(0) = 0."""
    return torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-12)), torch.zeros_like(d2))


def _pixel_grid(height: int, width: int) -> torch.Tensor:
    """(H*W, 2) pixel-centre coordinates (x, y) in grid_sample's [-1, 1] (align_corners=False)."""
    ys = (torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


@lru_cache(maxsize=16)
def _tps_operator(height: int, width: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(base grid (H*W, 2), M (H*W, n)) such that the TPS flow at every pixel is ``M @ D`` for
    displacements ``D`` (n, 2) of the ``grid x grid`` control points.

    Solves the TPS system [[K, P], [P^T, 0]] [W; A] = [D; 0] once per shape (the operator is
    linear in D), so each warp is one small matrix product plus ``grid_sample``.
    """
    lin = torch.linspace(-1, 1, grid, dtype=torch.float64)
    cy, cx = torch.meshgrid(lin, lin, indexing="ij")
    ctrl = torch.stack([cx.reshape(-1), cy.reshape(-1)], 1)                # (n, 2)
    n = len(ctrl)
    P = torch.cat([torch.ones(n, 1, dtype=torch.float64), ctrl], 1)        # (n, 3)
    L = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    L[:n, :n] = _tps_kernel(torch.cdist(ctrl, ctrl) ** 2)
    L[:n, n:], L[n:, :n] = P, P.T
    L_inv = torch.linalg.inv(L)[:, :n]                                     # maps D -> [W; A]
    pts = _pixel_grid(height, width)
    B = torch.cat([_tps_kernel(torch.cdist(pts, ctrl) ** 2),
                   torch.ones(len(pts), 1, dtype=torch.float64), pts], 1)  # (H*W, n + 3)
    return pts.float(), (B @ L_inv).float()


def tps_warp(x: torch.Tensor, displacements: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` (C, H, W) or (B, C, H, W) by a thin-plate spline.

    ``displacements`` (g, g, 2) move the sampling position of a regular g x g grid of control
    points spanning the image (x, y in grid_sample's [-1, 1] units: 0.1 = 5 % of the width);
    zero displacements give the identity. Outside the image is 0.
    """
    batched = x.dim() == 4
    xb = x if batched else x[None]
    g = displacements.shape[0]
    h, w = xb.shape[-2:]
    base, M = _tps_operator(h, w, g)
    flow = M @ displacements.reshape(-1, 2).to(M)
    sample = (base + flow).reshape(1, h, w, 2).expand(xb.shape[0], -1, -1, -1)
    out = F.grid_sample(xb.float(), sample, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.to(x.dtype)
    return out if batched else out[0]


class RandomTPS(torch.nn.Module):
    """Random non-rigid deformation: control points of a ``grid x grid`` lattice move by
    uniform random offsets of at most ``magnitude`` ([-1, 1] units), applied with probability p."""

    def __init__(self, grid: int = 4, magnitude: float = 0.06, p: float = 1.0):
        super().__init__()
        self.grid, self.magnitude, self.p = grid, magnitude, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p < 1 and torch.rand(()) >= self.p:
            return x
        d = (torch.rand(self.grid, self.grid, 2) * 2 - 1) * self.magnitude
        return tps_warp(x, d)


# ---------------------------------------------------------------------------------------------
# small operations torchvision lacks
# ---------------------------------------------------------------------------------------------
class RandomRot90(torch.nn.Module):
    """Rotate by a random multiple of 90 degrees (90, 180, 270), exactly (no interpolation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, int(torch.randint(1, 4, ())), dims=(-2, -1))


class RandomFixedRotation(torch.nn.Module):
    """Rotate by one of ``angles`` degrees (bilinear, black fill)."""

    def __init__(self, angles: Sequence[float] = (-2.0, 2.0)):
        super().__init__()
        self.angles = list(angles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = self.angles[int(torch.randint(len(self.angles), ()))]
        return TF.rotate(x, angle, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)


class RandomShift8(torch.nn.Module):
    """Shift by ``pixels`` in one of the 8 compass directions (black fill)."""

    def __init__(self, pixels: int = 3):
        super().__init__()
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dirs = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
        dx, dy = dirs[int(torch.randint(8, ()))]
        return shift(x, dx * self.pixels, dy * self.pixels)


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate ``x`` (..., H, W) by whole pixels (right/down positive), filling with 0."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    ys, yd = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
    xs, xd = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


class PixelSpread(torch.nn.Module):
    """Replace each pixel by a random neighbour at most ``radius`` pixels away (ImageMagick's
    ``-spread``)."""

    def __init__(self, radius: int = 1):
        super().__init__()
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        r = self.radius
        iy = (torch.arange(h)[:, None] + torch.randint(-r, r + 1, (h, w))).clamp(0, h - 1)
        ix = (torch.arange(w)[None, :] + torch.randint(-r, r + 1, (h, w))).clamp(0, w - 1)
        return x[..., iy, ix]


class MedianFilter(torch.nn.Module):
    """``kernel x kernel`` median filter (noise reduction), edges replicated."""

    def __init__(self, kernel: int = 3):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, p = self.kernel, self.kernel // 2
        shape = x.shape
        xb = x.reshape(-1, 1, *shape[-2:])
        patches = F.unfold(F.pad(xb, (p, p, p, p), mode="replicate"), k)  # (B, k*k, H*W)
        return patches.median(dim=1).values.reshape(shape)


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
def build_augmentation(name: str | None, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The preset ``name`` (see :data:`AUGMENTATIONS`) for ``size x size`` inputs."""
    name = (name or "none").lower()
    if name == "none":
        return v2.Identity()
    if name == "roth2015":
        return v2.Compose([
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1), fill=0.0),
            RandomTPS(grid=4, magnitude=0.06),
        ])
    if name == "rajkomar2016":
        return v2.RandomChoice([
            v2.Identity(),
            v2.RandomHorizontalFlip(p=1.0),
            v2.RandomVerticalFlip(p=1.0),
            RandomRot90(),
            RandomFixedRotation((-2.0, 2.0)),
            RandomShift8(3),
            PixelSpread(1),
            MedianFilter(3),
            v2.GaussianNoise(mean=0.0, sigma=0.02, clip=True),
        ])
    if name == "menkovski2015":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.75, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=8, fill=0.0),
            v2.RandomHorizontalFlip(p=0.5),
        ])
    raise InvalidConfigError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
