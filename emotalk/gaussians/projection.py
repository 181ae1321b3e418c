"""What every rasterizer shares: the constants of the 3DGS image model, its output type, the EWA
projection of Gaussians into cameras and the opacity-aware screen boxes used to bin them into tiles.

Kept apart from the rasterizers so the reference (`raster.py`) and the vectorised fallback
(`raster_fast.py`) cull and project exactly alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped (as in gsplat)
ALPHA_MAX = 0.999  # a single Gaussian never makes a pixel fully opaque
T_STOP = 1e-4  # a pixel is finished once its transmittance would drop to this
EPS2D = 0.3  # px² added to every projected covariance (anti-aliasing blur)
TILE = 8  # tile side in px


@dataclass
class RasterOut:
    """What a rasterizer returns for a batch of cameras."""

    rgb: Tensor  # [B,H,W,3] premultiplied colour (sum of weight·colour)
    alpha: Tensor  # [B,H,W,1] 1 - final transmittance
    means2d: Tensor | None  # [B,N,2] (or gsplat's [B,1,N,2]) projected centres (px); grads feed densification
    radii: Tensor | None  # [B,N] >0 where the Gaussian was drawn


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] (w, x, y, z), any norm -> [..., 3, 3] rotation."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor,
            width: int, height: int, near: float = 0.01) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA projection of Gaussians into B cameras.

    means [B,N,3], quats [B,N,4], scales [B,N,3], viewmats [B,4,4] (world->camera, OpenCV), Ks [B,3,3]
    -> means2d [B,N,2] px, conics [B,N,3] (a,b,c of the inverse 2-D covariance), depths [B,N],
       valid [B,N] (in front of the near plane and with a proper covariance).
    """
    R, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [B,1,3,3], [B,1,3]
    pc = (R @ means[..., None])[..., 0] + t  # [B,N,3]
    rot = quat_to_rotmat(quats)  # [B,N,3,3]
    M = rot * scales[..., None, :]  # R·diag(s)
    cov_c = R @ (M @ M.transpose(-1, -2)) @ R.transpose(-1, -2)  # [B,N,3,3]
    fx, fy = Ks[:, 0, 0][:, None], Ks[:, 1, 1][:, None]
    cx, cy = Ks[:, 0, 2][:, None], Ks[:, 1, 2][:, None]
    z = pc[..., 2]
    zs = torch.where(z > near, z, torch.ones_like(z))  # avoid division by ~0 for culled points
    # The Jacobian is evaluated at a point clamped to 1.3× the field of view, like gsplat.
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * width / fx, cx / fx + 0.3 * width / fx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * height / fy, cy / fy + 0.3 * height / fy
    tx = zs * torch.minimum(torch.maximum(pc[..., 0] / zs, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(pc[..., 1] / zs, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2],
                    dim=-1).reshape(zs.shape + (2, 3))  # [B,N,2,3]
    cov2 = J @ cov_c @ J.transpose(-1, -2)  # [B,N,2,2]
    a = cov2[..., 0, 0] + EPS2D
    b = cov2[..., 0, 1]
    c = cov2[..., 1, 1] + EPS2D
    det = a * c - b * b
    valid = (z > near) & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    means2d = torch.stack([fx * pc[..., 0] / zs + cx, fy * pc[..., 1] / zs + cy], dim=-1)
    return means2d, conics, z, valid & (a > 0) & (c > 0)


@torch.no_grad()
def tile_boxes(means2d: Tensor, conics: Tensor, opacities: Tensor, valid: Tensor, width: int,
               height: int) -> tuple[Tensor, Tensor, Tensor]:
    """Which Gaussians are drawn, their radii and the tiles their opacity-aware boxes cover.

    means2d [...,2], conics [...,3], opacities [...], valid [...] -> ok [...] (drawn), radii [...]
    (px, 0 where not drawn), tiles [...,4] (x0, x1, y0, y1: tile columns x0..x1-1, rows y0..y1-1, long).
    Beyond its box a Gaussian's alpha is below 1/255, so a box only decides where to look, not what is drawn.
    """
    op = opacities.clamp_min(1e-12)
    ok = valid & (op >= ALPHA_MIN)
    # Opacity-aware extent: beyond this many σ the alpha is below 1/255.
    ext = torch.sqrt(2.0 * torch.log(op / ALPHA_MIN).clamp_min(0)).clamp_max(3.33)
    det = (conics[..., 0] * conics[..., 2] - conics[..., 1] ** 2).clamp_min(1e-20)
    var_x, var_y = conics[..., 2] / det, conics[..., 0] / det  # diagonal of the 2-D covariance
    rx, ry = torch.ceil(ext * var_x.sqrt()), torch.ceil(ext * var_y.sqrt())
    mx, my = means2d[..., 0], means2d[..., 1]
    ok &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
    ok &= (rx > 0) | (ry > 0)
    radii = torch.where(ok, torch.maximum(rx, ry), torch.zeros_like(rx))
    tw, th = math.ceil(width / TILE), math.ceil(height / TILE)
    tiles = torch.stack([((mx - rx) / TILE).floor().clamp(0, tw), ((mx + rx) / TILE).ceil().clamp(0, tw),
                         ((my - ry) / TILE).floor().clamp(0, th), ((my + ry) / TILE).ceil().clamp(0, th)],
                        -1).long()
    return ok, radii, tiles
