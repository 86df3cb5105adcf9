"""Which rsdl algorithm runs a model file: what the "Run model on active raster" action opens.

The model's type (its metadata) decides through the registry ``core/contract/model_types.py``:
the first Processing algorithm of its role (rsdl:segment for segmentors and regressors,
rsdl:classifytiles for classifiers, rsdl:detect for detectors and instance segmentors).
"""

from __future__ import annotations

import os

from ..core.contract.model_spec import ModelType
from ..core.contract.model_types import role_of
from ..core.errors import ModelSpecError
from ..inference.backends import load_model

PROCESSING_PREFIX = "rsdl:"  # the registry also lists shell commands (python -m training ...)
CLASSIFY_TILES = "rsdl:classifytiles"


def algorithm_for_model(path: str | os.PathLike) -> str:
    """The id of the rsdl algorithm that runs the model at ``path``.

    The model is loaded on the CPU (its metadata and output shapes only; nothing is run).
    Raises ``RsdlError`` (``ModelError``, ``ModelSpecError``, ``MissingDependencyError``) with the
    reason when the file cannot be read or no rsdl algorithm runs its type.
    """
    backend = load_model(path, threads=1, device="cpu")
    spec = backend.spec
    role = role_of(spec.model_type)
    algorithms = [tool for tool in role.tools if tool.startswith(PROCESSING_PREFIX)] if role else []
    if not algorithms:
        raise ModelSpecError(
            f"The model is a '{spec.declared_model_type}' model (metadata key 'model_type'); no rsdl "
            "algorithm runs that type. Check 'model_type' in the model's metadata (rsdl:modelinfo "
            "shows it)."
        )
    if spec.model_type is ModelType.SEGMENTOR and all(len(o.shape) == 2 for o in backend.outputs):
        # A model without 'model_type' reads as a Segmentor; outputs of one row per tile ([B, C])
        # make it a tile classifier, which rsdl:classifytiles accepts (rsdl:segment would refuse it).
        return CLASSIFY_TILES
    return algorithms[0]
