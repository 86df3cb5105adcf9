"""What every algorithm that runs a model shares: the model, band, batch, device and thread
parameters, the raster checks, loading the model and choosing the bands it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsRasterLayer,
)

from ..core.contract.model_check import check_raster_compatibility
from ..core.contract.model_spec import ModelType
from ..core.contract.model_types import refuse_unless_run_by
from ..core.errors import ModelSpecError, RsdlError
from ..core.raster.grid import RasterGrid
from ..core.tiling.policy import default_batch_size
from ..inference.backends import DEVICES, ModelBackend, load_model
from ..qgis_io.area_mask import MaskedWindowReader
from ..qgis_io.provider_reader import ProviderWindowReader, provider_band_count, provider_dtype_name
from ..qgis_io.stripe_reader import stripe_reader_factory
from .base_algorithm import RsdlAlgorithm

DEVICE_OPTIONS = ("Auto (GPU when available)", "CPU")


class ModelAlgorithm(RsdlAlgorithm):
    GROUP = "Inference"
    GROUP_ID = "inference"

    MODEL = "MODEL"
    BANDS = "BANDS"
    BATCH_SIZE = "BATCH_SIZE"
    DEVICE = "DEVICE"
    THREADS = "THREADS"
    EXECUTION_PROVIDER = "EXECUTION_PROVIDER"
    # Whether a model declared Segmentor (what a model without metadata reads as) may run here,
    # its outputs deciding; see core/contract/model_types.py.
    UNDECLARED_MODEL_TYPE_OK = False

    # -- parameters -------------------------------------------------------------------------

    def add_model_parameters(self, raster_parameter: str, model_help: str) -> None:
        """MODEL, and BANDS of the raster parameter ``raster_parameter``."""
        self.add_parameter(
            QgsProcessingParameterFile(self.MODEL, self.tr("Model file (ONNX or TorchScript)")),
            model_help + " Pickled PyTorch files (.pt/.pth from torch.save) are refused without "
            "being opened: export them to ONNX.",
        )
        self.add_parameter(
            QgsProcessingParameterBand(
                self.BANDS,
                self.tr("Bands to feed the model"),
                parentLayerParameterName=raster_parameter,
                optional=True,
                allowMultiple=True,
            ),
            "The raster bands the model reads, in order (a band may repeat). Empty: the bands "
            "named by the model, else the first bands (1, 2, ... as many as the model takes).",
        )

    def add_run_parameters(self, model_type: ModelType, unit: str) -> None:
        """BATCH_SIZE (defaulting to ``model_type``'s), DEVICE and THREADS, and the EXECUTION_PROVIDER
        output."""
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Batch size"),
                defaultValue=default_batch_size(model_type),
                minValue=1,
                maxValue=4096,
            ),
            f"{unit} per model call. Larger batches are faster on a GPU and need more memory.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.DEVICE, self.tr("Device"), options=list(DEVICE_OPTIONS), defaultValue=0
            ),
            "Auto runs on a CUDA GPU when onnxruntime (or torch) can use one, else on the CPU. "
            "The log says which ran.",
            advanced=True,
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.THREADS, self.tr("CPU threads"), defaultValue=0, minValue=0, maxValue=256
            ),
            "Threads the model may use on the CPU; 0 lets the runtime decide.",
            advanced=True,
        )
        self.addOutput(QgsProcessingOutputString(self.EXECUTION_PROVIDER, self.tr("Execution provider")))

    # -- inputs -----------------------------------------------------------------------------

    def raster_layer(
        self, parameters: dict[str, Any], name: str, context: QgsProcessingContext
    ) -> QgsRasterLayer:
        """The raster of parameter ``name``; refused when QGIS cannot open it or it has no CRS."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            raise RsdlError(f"{name}: choose a raster layer that QGIS can open.")
        if not layer.crs().isValid():
            raise RsdlError(
                f"Raster '{layer.name()}' has no CRS; assign one (Raster > Projections > Assign "
                "Projection) so outputs can be georeferenced."
            )
        return layer

    def optional_int(
        self, parameters: dict[str, Any], name: str, context: QgsProcessingContext
    ) -> int | None:
        """An optional number parameter; None when left empty."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsInt(parameters, name, context)

    def load_backend(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> ModelBackend:
        """The model of MODEL on the chosen device, refused unless this algorithm runs its type; the
        log says which provider runs it."""
        model_path = self.parameterAsFile(parameters, self.MODEL, context)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        backend = load_model(model_path, self.parameterAsInt(parameters, self.THREADS, context), device)
        refuse_unless_run_by(
            backend.spec, f"rsdl:{self.name()}", Path(model_path).name, self.UNDECLARED_MODEL_TYPE_OK
        )
        model_type = backend.spec.model_type.value
        feedback.pushInfo(f"Model: {Path(model_path).name} ({model_type}), running on {backend.provider}.")
        return backend

    def raster_bands(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        backend: ModelBackend,
        layer: QgsRasterLayer,
        uses_resolution: bool = True,
    ) -> tuple[int, ...]:
        """The raster bands to feed the model (refused with the reason when it cannot be fed)."""
        provider = layer.dataProvider()
        try:
            compatibility = check_raster_compatibility(
                backend.spec,
                backend.input_channels,
                provider_band_count(provider),
                provider_dtype_name(provider),
                uses_resolution and layer.crs().isGeographic(),
                tuple(self.parameterAsInts(parameters, self.BANDS, context)) or None,
            )
        except ModelSpecError as error:  # the core check knows neither the raster nor the model
            raise ModelSpecError(
                f"Raster '{layer.name()}' and model '{Path(backend.path).name}': {error}"
            ) from None
        for warning in compatibility.warnings:
            feedback.pushWarning(warning)
        return compatibility.bands

    @staticmethod
    def grid_reader_factory(
        layer: QgsRasterLayer,
        grid: RasterGrid,
        bands: tuple[int, ...],
        area_mask: Path | None,
        feedback: QgsProcessingFeedback,
    ) -> Callable[[], Any]:
        """What a tile stream's reader thread calls for its reader: GDAL stripes for a file at its
        own pixels, else the QGIS provider; masked by the AREA polygons when given."""
        source = layer.dataProvider().clone()
        stripe_reader = stripe_reader_factory(layer, grid, bands)
        feedback.pushDebugInfo(
            "Reading: " + ("GDAL, one stripe per tile row." if stripe_reader else "the QGIS provider.")
        )

        def reader_factory():
            reader = stripe_reader() if stripe_reader else ProviderWindowReader(source, grid, bands)
            return MaskedWindowReader(reader, area_mask) if area_mask else reader

        return reader_factory
