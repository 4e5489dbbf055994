"""BatchNorm folded into the preceding convolutions, for inference."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import Bottleneck


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that follows a convolution folded into its weights.

    Covers the layouts of both networks: conv -> BN pairs inside ``nn.Sequential`` containers (the
    stem, extra blocks, downsample branches, MobileNetV2 and SSDLite heads) and torchvision's ResNet
    ``Bottleneck`` (``conv1``/``bn1`` ... ``conv3``/``bn3``). Outputs equal the original's to float32
    rounding, and a forward pass skips a full pass over the feature maps per BatchNorm. The copy has another state-dict layout: keep the original for saving.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                if isinstance(module[index], nn.Conv2d) and isinstance(module[index + 1], nn.BatchNorm2d):
                    module[index] = fuse_conv_bn_eval(module[index], module[index + 1])
                    module[index + 1] = nn.Identity()
        elif isinstance(module, Bottleneck):
            for k in (1, 2, 3):
                setattr(module, f"conv{k}", fuse_conv_bn_eval(getattr(module, f"conv{k}"), getattr(module, f"bn{k}")))
                setattr(module, f"bn{k}", nn.Identity())
    return model
