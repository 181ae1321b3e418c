"""3D Gaussian talking head: model (`model`), deformation fields (`fields`), rasterizers (`raster`)."""

from emotalk.gaussians.model import Frames, ModelSettings, RenderOut, TalkingGaussians, build_model
from emotalk.gaussians.raster import RasterOut, rasterize, rasterize_gsplat, rasterize_torch

__all__ = ["Frames", "ModelSettings", "RasterOut", "RenderOut", "TalkingGaussians", "build_model",
           "rasterize", "rasterize_gsplat", "rasterize_torch"]
