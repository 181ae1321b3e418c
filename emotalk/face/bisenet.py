"""BiSeNet face parser (ResNet-18 context path), laid out to load the CelebAMask-HQ `79999_iter.pth`.

Written here because torchvision is not a dependency; module names match the checkpoint's keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 19  # CelebAMask-HQ labels, 0 = background


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> batch norm -> ReLU; keys: conv, bn."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.add_module("relu", nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a skip (1x1 conv + BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip, inplace=True)


class ResNet18(nn.Module):
    """Backbone; returns the stride 8, 16 and 32 feature maps (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 3, 2, 1)
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinement(nn.Module):
    """3x3 conv, then a channel gate from its global average."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(f.mean((2, 3), keepdim=True))))
        return f * gate


class ContextPath(nn.Module):
    """Backbone plus attention refinement and top-down fusion at strides 32 and 16."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, k=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(f32.mean((2, 3), keepdim=True))
        s32 = self.arm32(f32) + avg  # broadcast == nearest upsampling of a 1x1 map
        up32 = self.conv_head32(F.interpolate(s32, size=f16.shape[2:], mode="nearest"))
        s16 = self.arm16(f16) + up32
        up16 = self.conv_head16(F.interpolate(s16, size=f8.shape[2:], mode="nearest"))
        return f8, up16


class FeatureFusion(nn.Module):
    """Concatenate spatial and context features, 1x1 conv, squeeze-excite style residual gate."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, k=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        f = self.convblk(torch.cat([fsp, fcp], 1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(f.mean((2, 3), keepdim=True)))))
        return f * gate + f


class OutputHead(nn.Module):
    """3x3 ConvBNReLU then a 1x1 classifier."""

    def __init__(self, cin: int, cmid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cmid)
        self.conv_out = nn.Conv2d(cmid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face parser: image [B,3,H,W] (ImageNet-normalised) -> logits [B,19,H,W]."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        # Auxiliary heads exist in the checkpoint (training only); kept so the state dict loads strictly.
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8 = self.cp(x)
        logits = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(weights_path: str, device: str = "cpu") -> BiSeNet:
    """Build the network and load a `79999_iter.pth` state dict strictly (eval mode)."""
    sd = torch.load(weights_path, map_location="cpu", weights_only=True)
    net = BiSeNet()
    net.load_state_dict(sd, strict=True)
    return net.eval().to(device)
