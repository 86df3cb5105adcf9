"""Model backends (inference/backends.py) on the peer plugin's real models and on our test models."""

from __future__ import annotations

import pickle
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import MissingDependencyError, ModelError
from rsdl_qgis_plugin.inference.backends import (
    ModelFormat,
    batch_failure,
    is_out_of_memory,
    load_model,
    sniff_model_format,
    spec_input_channels,
)
from scripts.make_test_models import (
    EVIL_MARKER,
    RECEPTIVE_FIELD_RADIUS,
    SEG_SPEC,
    write_evil_pickles,
    write_test_models,
)

DEEPNESS_MODELS = "deepness_peer/models"


@dataclass(frozen=True)
class Peer:
    """What one Deepness model must give: B in an output shape stands for the batch size."""

    path: str
    model_type: ModelType
    fixed_batch: int | None
    input_size: tuple[int, int]
    outputs: tuple[tuple[int | str, ...], ...]
    class_names: tuple[dict[int, str], ...] = ()
    tile_size: int | None = None


SEG = ModelType.SEGMENTOR
PEERS = [
    Peer("dummy_segmentation_models/dummy_model.onnx", SEG, 1, (512, 512), (("B", 3, 512, 512),)),
    Peer(
        "dummy_segmentation_models/different_output_size_512_to_484.onnx",
        SEG,
        1,
        (512, 512),
        (("B", 2, 484, 484),),
    ),
    Peer(
        "dummy_segmentation_models/one_output_sigmoid_bsx1x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 1, 512, 512),),
        ({0: "Coffee"},),
    ),
    # Dynamic input batch, but the output is fixed to batch 1 (the model fails on more).
    Peer(
        "dummy_segmentation_models/one_output_sigmoid_bsx512x512.onnx",
        SEG,
        1,
        (512, 512),
        (("B", 512, 512),),
        ({0: "Coffee"},),
    ),
    Peer(
        "dummy_segmentation_models/one_output_softmax_bsx2x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 2, 512, 512),),
    ),
    Peer(
        "dummy_segmentation_models/two_outputs_sigmoid_bsx1x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 1, 512, 512), ("B", 1, 512, 512)),
        ({0: "Coffee"}, {0: "Juice"}),
    ),
    Peer(
        "dummy_segmentation_models/two_outputs_sigmoid_bsx512x512.onnx",
        SEG,
        1,
        (512, 512),
        (("B", 512, 512), ("B", 512, 512)),
    ),
    Peer(
        "dummy_segmentation_models/two_outputs_softmax_bsx2x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 2, 512, 512), ("B", 2, 512, 512)),
        ({0: "Coffee", 1: "Tea"}, {0: "Juice", 1: "Beer"}),
    ),
    Peer(
        "dummy_regression_models/dummy_regression_model.onnx",
        ModelType.REGRESSOR,
        1,
        (512, 512),
        (("B", 1, 512, 512),),
        ({0: "_background", 1: "building", 2: "woodland", 3: "water", 4: "road"},),
        tile_size=256,
    ),
    Peer(
        "dummy_regression_models/dummy_regression_model_batched.onnx",
        ModelType.REGRESSOR,
        None,
        (512, 512),
        (("B", 1, 512, 512),),
        ({0: "_background", 1: "building", 2: "woodland", 3: "water", 4: "road"},),
        tile_size=256,
    ),
    Peer(
        "dummy_regression_models/one_output_sigmoid_bsx1x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 1, 512, 512),),
        ({0: "Happiness"},),
    ),
    Peer(
        "dummy_regression_models/one_output_sigmoid_bsx512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 512, 512),),
    ),
    Peer(
        "dummy_regression_models/two_outputs_sigmoid_bsx1x512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 1, 512, 512), ("B", 1, 512, 512)),
        ({0: "Luck"}, {0: "Failure"}),
    ),
    Peer(
        "dummy_regression_models/two_outputs_sigmoid_bsx512x512.onnx",
        SEG,
        None,
        (512, 512),
        (("B", 512, 512), ("B", 512, 512)),
    ),
    # Declares "Regression", which is no Deepness type: read as UNKNOWN, never run as a regressor.
    Peer("dummy_recognition_model.onnx", ModelType.UNKNOWN, None, (224, 224), (("B", 224),)),
    Peer("dummy_superresolution_model.onnx", SEG, 1, (64, 64), (("B", 3, 128, 128),)),
    Peer("one_output_sigmoid_red_detector.onnx", SEG, None, (512, 512), (("B", 1, 512, 512),)),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return write_test_models(tmp_path_factory.mktemp("models"))


def test_the_table_covers_every_peer_model(shared_data):
    found = {
        p.relative_to(shared_data / DEEPNESS_MODELS).as_posix()
        for p in (shared_data / DEEPNESS_MODELS).rglob("*.onnx")
    }
    assert found == {peer.path for peer in PEERS}


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.path.split("/")[-1])
def test_peer_model_loads_and_runs(peer, shared_data):
    backend = load_model(shared_data / DEEPNESS_MODELS / peer.path, threads=2)
    assert backend.format is ModelFormat.ONNX
    assert backend.provider == "CPUExecutionProvider" or backend.provider.startswith("CUDA")
    assert backend.spec.model_type is peer.model_type
    assert backend.spec.head_class_names == peer.class_names
    assert backend.spec.tile_size == peer.tile_size
    assert backend.input_channels == 3
    assert backend.input_size == peer.input_size
    assert backend.fixed_batch == peer.fixed_batch
    batch = 3  # more than a fixed batch of 1: run in chunks
    outputs = backend.run(np.zeros((batch, 3, *peer.input_size), dtype=np.float32))
    assert [o.shape for o in outputs] == [
        tuple(batch if d == "B" else d for d in shape) for shape in peer.outputs
    ]


def test_onnxruntime_and_torchscript_agree(models):
    for name in ("fcn_seg", "fcn_two_heads"):
        if f"{name}.pt" not in models:
            pytest.skip("torch is not installed")
        onnx_model, torch_model = load_model(models[f"{name}.onnx"]), load_model(models[f"{name}.pt"])
        assert torch_model.format is ModelFormat.TORCHSCRIPT and torch_model.provider == "torch:cpu"
        assert torch_model.spec == onnx_model.spec
        assert [o.shape for o in torch_model.outputs] == [o.shape for o in onnx_model.outputs]
        pixels = np.random.default_rng(1).integers(0, 256, (2, 3, 48, 40), dtype=np.uint8)
        batch = onnx_model.spec.normalize(pixels)
        for expected, actual in zip(onnx_model.run(batch), torch_model.run(batch)):
            assert actual.shape == expected.shape
            np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_our_segmentation_model_and_its_spec(models):
    backend = load_model(models["fcn_seg.onnx"])
    assert backend.spec == SEG_SPEC
    assert backend.inputs[0].shape == (None, 3, None, None) and backend.inputs[0].dtype == "float32"
    assert backend.input_size == (None, None) and backend.fixed_batch is None


def test_whole_image_forward_is_the_oracle_for_tiles(models):
    """Fully convolutional: any image size runs, and a tile's interior equals the whole image's."""
    backend = load_model(models["fcn_seg.onnx"])
    pixels = np.random.default_rng(2).integers(0, 256, (1, 3, 75, 101), dtype=np.uint8)
    image = backend.spec.normalize(pixels)
    (whole,) = backend.run(image)
    assert whole.shape == (1, 3, 75, 101)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-5)  # softmax over channels
    rows, cols = slice(10, 42), slice(30, 94)
    (tile,) = backend.run(image[:, :, rows, cols])
    inner = slice(RECEPTIVE_FIELD_RADIUS, -RECEPTIVE_FIELD_RADIUS)
    np.testing.assert_allclose(tile[..., inner, inner], whole[:, :, rows, cols][..., inner, inner], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_fixed_batch_is_padded_and_sliced(models, batch):
    fixed = load_model(models["fcn_seg_batch2.onnx"])
    dynamic = load_model(models["fcn_seg.onnx"])
    assert fixed.fixed_batch == 2 and fixed.input_size == (64, 64)
    pixels = np.random.default_rng(batch).normal(size=(batch, 3, 64, 64)).astype(np.float32)
    (got,) = fixed.run(pixels)
    (expected,) = dynamic.run(pixels)
    assert got.shape == (batch, 3, 64, 64)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_fixed_tile_size_is_enforced(models):
    with pytest.raises(ModelError, match="takes tiles of 64 x 64 pixels; got 32 x 32"):
        load_model(models["fcn_seg_batch2.onnx"]).run(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ModelError, match=r"batches of \[N, 3, height, width\]; got \[1, 4, 64, 64\]"):
        load_model(models["fcn_seg.onnx"]).run(np.zeros((1, 4, 64, 64), dtype=np.float32))


def test_regressor_outputs_are_not_truncated(models):
    backend = load_model(models["fcn_regressor.onnx"])
    assert backend.spec.model_type is ModelType.REGRESSOR
    pixels = np.random.default_rng(3).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    (values,) = backend.run(backend.spec.normalize(pixels))
    assert values.shape == (2, 1, 64, 64) and values.dtype == np.float32
    assert values.min() < 0.0 and values.max() > 1.0


def test_two_heads_have_their_own_class_names(models):
    backend = load_model(models["fcn_two_heads.onnx"])
    assert [o.shape for o in backend.outputs] == [(None, 3, None, None), (None, 1, None, None)]
    assert backend.spec.class_name(1) == "building"
    assert backend.spec.class_name(0, head=1) == "tree"


def test_model_without_metadata_loads_with_defaults(models):
    backend = load_model(models["fcn_no_metadata.onnx"])
    assert backend.spec == ModelSpec.from_metadata({})
    assert backend.spec.spec_version == 0 and backend.spec.model_type is ModelType.SEGMENTOR
    assert backend.run(np.zeros((1, 3, 16, 16), dtype=np.float32))[0].shape == (1, 3, 16, 16)


@pytest.mark.parametrize("name", ["evil.pth", "evil_zip.pth"])
def test_pickles_are_refused_without_unpickling(models, name):
    marker = models[name].parent / EVIL_MARKER
    assert sniff_model_format(models[name]) is ModelFormat.PICKLE
    with pytest.raises(ModelError, match=r"never unpickles.*ONNX.*TorchScript"):
        load_model(models[name])
    assert not marker.exists()


def test_the_evil_pickles_would_create_the_marker(tmp_path):
    """Guards the test above against a vacuous pass: unpickling really creates the marker."""
    plain, _zipped = write_evil_pickles(tmp_path)
    pickle.loads(plain.read_bytes())  # our own payload: it only creates the marker
    assert (tmp_path / EVIL_MARKER).exists()


def test_protocol_0_pickle_is_recognised(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=0))
    with pytest.raises(ModelError, match="Python pickle"):
        load_model(path)


def test_content_decides_not_the_extension(models, tmp_path):
    disguised_onnx = tmp_path / "model.pt"
    shutil.copy(models["fcn_seg.onnx"], disguised_onnx)
    assert load_model(disguised_onnx).format is ModelFormat.ONNX
    if "fcn_seg.pt" in models:
        disguised_torchscript = tmp_path / "model.onnx"
        shutil.copy(models["fcn_seg.pt"], disguised_torchscript)
        assert load_model(disguised_torchscript).format is ModelFormat.TORCHSCRIPT


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "truncated.onnx",
            r"cannot load the ONNX model .*(Protobuf parsing failed|INVALID_PROTOBUF).*truncated",
        ),
        ("not_a_model.onnx", "not a model file rsdl can read"),
        ("escape/escape.onnx", "External data path.*escapes.*must lie in the model's folder"),
        ("two_inputs.onnx", r"has 2 inputs \(input0, input1\)"),
        ("rank3_input.onnx", r"input of shape \[\?, 8, 8\].*rank 4"),
        ("class_mismatch.onnx", r"Output 1 .* has 3 channels but 'class_names' names 2 classes"),
    ],
)
def test_unusable_models_are_refused_with_the_reason(models, name, message):
    with pytest.raises(ModelError, match=f"(?s){message}"):
        load_model(models[name])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nothing.onnx")
    with pytest.raises(ModelError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="Unknown device 'gpu'"):
        load_model(tmp_path, device="gpu")


def test_cuda_requested_without_cuda(models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        load_model(models["fcn_seg.onnx"], device="cuda")
    assert load_model(models["fcn_seg.onnx"], device="cpu").provider == "CPUExecutionProvider"


def test_missing_onnxruntime_gives_the_install_command(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes "import onnxruntime" fail
    with pytest.raises(MissingDependencyError) as caught:
        load_model(models["fcn_seg.onnx"])
    assert f'"{sys.executable}" -m pip install onnxruntime' in str(caught.value)


def test_missing_torch_gives_the_install_command(models, monkeypatch):
    if "fcn_seg.pt" not in models:
        pytest.skip("torch is not installed")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"-m pip install torch"):
        load_model(models["fcn_seg.pt"])


def test_torchscript_needs_bands_in_its_spec():
    with pytest.raises(ModelError, match="lists no 'bands'"):
        spec_input_channels(ModelSpec(), "model.pt")
    assert spec_input_channels(ModelSpec(bands=(1, 2, 3, 4)), "model.pt") == 4


@pytest.mark.parametrize("name", ["fcn_seg.onnx", "fcn_seg.pt"])
def test_a_batch_the_runtime_rejects_is_a_model_error_naming_model_and_shape(models, name):
    if name not in models:
        pytest.skip("torch is not installed")
    backend = load_model(models[name])
    wrong = np.zeros((2, 5, 32, 32), dtype=np.float32)  # five bands into a three-band net
    with pytest.raises(
        ModelError, match=r"model '.*fcn_seg\.(onnx|pt)' failed on a batch of \[2, 5, 32, 32\]"
    ):
        backend._forward(wrong)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("bad alloc"),
    ],
)
def test_running_out_of_memory_is_a_memory_error_the_caller_can_lower_the_batch_for(error):
    failure = batch_failure(error, "ONNX", "m.onnx", np.zeros((8, 3, 4, 4), dtype=np.float32))
    assert isinstance(failure, MemoryError) == is_out_of_memory(error)
    if not isinstance(failure, MemoryError):
        assert isinstance(failure, ModelError) and "[8, 3, 4, 4]" in str(failure)
