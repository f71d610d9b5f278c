import copy
import shutil
import warnings

import pytest
import torch
from cuda_marks import cuda_test
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.modeling.backbone import BackboneFPN
from tinyfast.modeling.build import build_model
from tinyfast.modeling.inference import CompiledNetwork, fold_batchnorm, prepare_for_inference, run_network
from tinyfast.tiling import TileSettings


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


def _detector(name: str) -> nn.Module:
    """A small detector of each family with BatchNorm trained (not frozen), random weights, and a head prior
    high enough that random tiles give candidates."""
    config = load_config(
        DEFAULT_CONFIG, ["model.channels=16", "model.stacked_convs=1", "model.pretrained=false"]
    )
    model_config = {**config["model"], "name": name}
    if name != "adap_fcos":
        model_config = {
            key: value
            for key, value in model_config.items()
            if key in ("name", "backbone", "pretrained", "backbone_norm", "frozen_stages", "channels")
        }
    torch.manual_seed(0)
    model = build_model(model_config)
    _randomize_norms(model, torch.Generator().manual_seed(2))
    return model.eval()


SETTINGS = TileSettings(nms_pre=100, per_tile_nms=True, score_threshold=0.0)


def assert_best_detections_close(found, expected, count=20):
    """Per tile, detections found and the best `count` close to those expected (float32 rounding apart)."""
    for ours, theirs in zip(found, expected, strict=True):
        assert len(theirs["scores"]) > 0
        top = min(len(ours["scores"]), len(theirs["scores"]), count)
        torch.testing.assert_close(ours["scores"][:top], theirs["scores"][:top], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(ours["boxes"][:top], theirs["boxes"][:top], rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("name", ["adap_fcos", "adap_retinanet", "faster_fpn"])
def test_prepared_float32_detector_finds_what_the_model_finds(name):
    model = _detector(name)
    tiles = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(3))
    expected = model.detect_tiles(tiles, SETTINGS)
    prepared = prepare_for_inference(model, "fp32", "cpu")
    assert prepared.inference_dtype is None and _norm_count(prepared) == 0
    assert prepared is not model and model.inference_dtype is None
    found = prepared.detect_tiles(tiles, SETTINGS)
    assert_best_detections_close(found, expected)


@pytest.mark.parametrize("name", ["adap_fcos", "faster_fpn"])
def test_bfloat16_inference_decodes_boxes_in_float32_and_stays_close(name):
    model = _detector(name)
    tiles = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(4))
    reference = prepare_for_inference(model, "fp32", "cpu").detect_tiles(tiles, SETTINGS)
    prepared = prepare_for_inference(model, "bf16", "cpu")
    assert prepared.inference_dtype is torch.bfloat16
    found = prepared.detect_tiles(tiles, SETTINGS)
    for ours, theirs in zip(found, reference, strict=True):
        assert ours["boxes"].dtype == ours["scores"].dtype == torch.float32
        top = min(len(ours["scores"]), len(theirs["scores"]), 20)
        assert top > 0
        torch.testing.assert_close(ours["scores"][:top], theirs["scores"][:top], rtol=0, atol=0.03)
    # Where the network's outputs differ is bf16 rounding: a few parts in a thousand of their range.
    network = prepared.backbone
    ours = run_network(torch.bfloat16, network, tiles)
    theirs = run_network(None, fold_batchnorm(model).backbone, tiles)
    for level_ours, level_theirs in zip(ours, theirs, strict=True):
        assert level_ours.dtype == torch.float32
        error = (level_ours - level_theirs).abs().max() / level_theirs.abs().max()
        assert error < 0.05, error.item()


@pytest.mark.skipif(
    not any(shutil.which(name) for name in ("c++", "g++", "clang++")), reason="no C++ compiler for inductor"
)
def test_compiled_detector_finds_what_the_prepared_model_finds():
    model = _detector("adap_fcos")
    tiles = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    expected = prepare_for_inference(model, "fp32", "cpu").detect_tiles(tiles, SETTINGS)
    compiled = prepare_for_inference(model, "fp32", "cpu", compile=True)
    assert isinstance(compiled.backbone, CompiledNetwork) and isinstance(compiled.head, CompiledNetwork)
    assert not isinstance(model.backbone, CompiledNetwork)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # compiled, not fallen back
        found = compiled.detect_tiles(tiles, SETTINGS)
    assert compiled.backbone.failed is None and compiled.head.failed is None and not compiled.cuda_graphs
    assert_best_detections_close(found, expected)


@pytest.mark.parametrize("name", ["adap_fcos", "faster_fpn"])
def test_where_compiling_fails_the_network_runs_uncompiled_after_one_warning(name, monkeypatch):
    def failing_compile(network, **options):
        def compiled(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(details)")

        return compiled

    model = _detector(name)
    tiles = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    expected = prepare_for_inference(model, "fp32", "cpu").detect_tiles(tiles, SETTINGS)
    monkeypatch.setattr(torch, "compile", failing_compile)
    prepared = prepare_for_inference(model, "fp32", "cpu", compile=True)
    assert {type(getattr(prepared, part)) for part in prepared.tile_networks} == {CompiledNetwork}
    with pytest.warns(
        RuntimeWarning, match="torch.compile failed .*No working C.. compiler found.*uncompiled"
    ):
        found = prepared.detect_tiles(tiles, SETTINGS)
    for ours, theirs in zip(found, expected, strict=True):
        for key in ours:
            assert torch.equal(ours[key], theirs[key])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # warned once
        prepared.detect_tiles(tiles, SETTINGS)
    with pytest.raises(RuntimeError, match="channels"):  # the network's own errors still show
        prepared.detect_tiles(torch.zeros(1, 4, 64, 96), SETTINGS)


@cuda_test
def test_on_the_gpu_the_compiled_detector_replays_its_cuda_graph_with_the_same_detections():
    model = _detector("adap_fcos")
    generator = torch.Generator().manual_seed(3)
    batches = [torch.randn(2, 3, 64, 96, generator=generator).cuda() for _ in range(3)]
    prepared = prepare_for_inference(model, "fp32", "cuda")
    compiled = prepare_for_inference(model, "fp32", "cuda", compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # compiled, not fallen back
        found = [compiled.detect_tiles(tiles, SETTINGS) for tiles in batches]  # recorded, then replayed
        again = compiled.detect_tiles(batches[0], SETTINGS)
    assert compiled.backbone.failed is None and compiled.cuda_graphs
    for tiles, ours_batch in zip([*batches, batches[0]], [*found, again], strict=True):
        for ours, theirs in zip(ours_batch, prepared.detect_tiles(tiles, SETTINGS), strict=True):
            assert len(theirs["scores"]) > 0
            top = min(len(ours["scores"]), len(theirs["scores"]), 20)
            torch.testing.assert_close(ours["scores"][:top], theirs["scores"][:top], rtol=1e-3, atol=1e-3)
    for ours, theirs in zip(found[0], again, strict=True):  # a replay does not overwrite earlier results
        assert torch.equal(ours["scores"], theirs["scores"])


def test_compile_needs_a_detector_that_names_its_tile_networks():
    with pytest.raises(ValueError, match="test.compile: Conv2d does not name its tile_networks"):
        prepare_for_inference(nn.Conv2d(3, 4, 3), "fp32", "cpu", compile=True)


def test_run_network_returns_float32_from_a_reduced_precision_network():
    network = nn.Conv2d(3, 4, 3)
    images = torch.randn(1, 3, 8, 8)
    outputs = run_network(
        torch.bfloat16, lambda x: ([network(x)], (network(x), torch.ones(1, dtype=torch.int64))), images
    )
    assert outputs[0][0].dtype == torch.float32 and outputs[1][1].dtype == torch.int64
    torch.testing.assert_close(outputs[0][0], network(images), rtol=2e-2, atol=2e-2)
    assert run_network(None, network, images).dtype == torch.float32


def test_bfloat16_training_step_losses_and_gradients_stay_close_to_float32():
    """One training step of the default run's model, float32 against bf16 autocast with channels-last
    tensors (what train.amp = "bf16" does on a CPU with native bf16)."""
    config = load_config(DEFAULT_CONFIG, ["model.pretrained=false"])
    torch.manual_seed(0)
    model = build_model(config["model"]).train()
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, 128, 160, generator=generator)
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 18.0, 30.0], [60.0, 40.0, 66.0, 52.0]]),
            "labels": torch.zeros(2, dtype=torch.int64),
        },
        {"boxes": torch.tensor([[100.0, 80.0, 130.0, 120.0]]), "labels": torch.zeros(1, dtype=torch.int64)},
    ]
    reduced = copy.deepcopy(model).to(memory_format=torch.channels_last)
    losses = model(images, targets)
    sum(losses.values()).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced_losses = reduced(images.contiguous(memory_format=torch.channels_last), targets)
    sum(reduced_losses.values()).backward()
    for name, value in losses.items():
        assert reduced_losses[name].dtype == torch.float32
        assert abs(reduced_losses[name].item() - value.item()) <= 0.03 * abs(value.item()) + 1e-3, name
    cosine = torch.nn.functional.cosine_similarity
    pairs = [
        (name, ours.grad.flatten(), theirs.grad.flatten())
        for (name, ours), theirs in zip(reduced.named_parameters(), model.parameters(), strict=True)
        if theirs.grad is not None and theirs.grad.norm() > 0
    ]
    everything = cosine(torch.cat([p[1] for p in pairs]), torch.cat([p[2] for p in pairs]), dim=0)
    assert everything > 0.93, everything.item()  # measured: 0.954
    for name, ours, theirs in pairs:  # the stem's, furthest from the loss, is the noisiest (about 0.9)
        assert cosine(ours, theirs, dim=0) > 0.8, name
