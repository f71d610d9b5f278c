import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from tinyfast.modeling.backbone import BackboneFPN
from tinyfast.modeling.fold_batchnorm import fold_batchnorm


def _randomize_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Statistics and affine parameters far from the identity, so that a missed or wrong fold shows."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d | FrozenBatchNorm2d):
            size = module.running_mean.shape
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) * 4 + 0.1)
            if module.weight is not None:
                with torch.no_grad():
                    module.weight.copy_(torch.randn(size, generator=generator))
                    module.bias.copy_(torch.randn(size, generator=generator))


def _norm_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "regnet_y_400mf"])
@pytest.mark.parametrize("norm", ["batch", "frozen", "group"])
def test_folded_backbone_computes_the_same_maps(name, norm):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = BackboneFPN(name, out_channels=32, pretrained=False, norm=norm).eval()
    _randomize_norms(model, generator)
    images = torch.randn(2, 3, 64, 96, generator=generator)
    before = [level.clone() for level in model(images)]
    folded = fold_batchnorm(model)
    after = folded(images)
    assert _norm_count(folded) == 0
    if norm != "group":
        assert _norm_count(model) > 0, "the original model must be left unchanged"
    for expected, got in zip(before, after, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    torch.testing.assert_close(model(images)[0], before[0], rtol=0, atol=0)


def test_group_norm_and_a_norm_after_a_non_conv_stay():
    layers = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.BatchNorm2d(4))
    folded = fold_batchnorm(layers)
    assert isinstance(folded[1], nn.GroupNorm) and isinstance(folded[3], nn.BatchNorm2d)


def test_norm_without_running_statistics_or_other_width_is_not_folded():
    layers = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    assert isinstance(fold_batchnorm(layers)[1], nn.BatchNorm2d)


def test_resnet_block_pairs_and_affine_free_norm():
    torch.manual_seed(1)
    block = BasicBlock(8, 8, norm_layer=lambda c: nn.BatchNorm2d(c, affine=False)).eval()
    _randomize_norms(block, torch.Generator().manual_seed(1))
    images = torch.randn(1, 8, 9, 9)
    folded = fold_batchnorm(block)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, nn.Identity)
    torch.testing.assert_close(folded(images), block(images), rtol=1e-4, atol=1e-4)
