"""rsdl training package (PyTorch Lightning): data, nets, tasks, checkpoints and the CLI.

It imports ``rsdl_qgis_plugin.core`` (label rules, chips, model spec) and may import
``rsdl_qgis_plugin.inference`` (both QGIS-free), never QGIS; nothing in the plugin imports it.

Layout: ``data/`` (LightningDataModules: ChipsDataModule, RasterVectorDataModule,
ImageFolderDataModule; caches, transforms), ``nets/`` (plain nn.Modules), ``tasks/``
(SegmentationTask, ClassificationTask), ``checkpoints.py``, ``cli.py`` (``python -m training``),
``configs/`` (one YAML per use case).

Contract for export, evaluate, explain and predict
--------------------------------------------------
``training.checkpoints.load_task(path) -> RsdlTask``
    Rebuilds a task from a checkpoint with ``torch.load(path, weights_only=True)`` only (no
    unpickling). The class comes from the hyperparameter ``_class_path`` (its name, among
    SegmentationTask and ClassificationTask; the path is never imported); the task is returned
    in eval mode on the CPU.
    ``load_datamodule(path)`` rebuilds the data module the task was trained on, with the
    checkpoint's normalisation (for evaluating on its validation/test split).

``task.net``
    A plain ``nn.Module``: normalised float32 (N, C, H, W) -> logits. Segmentation: (N, K, H, W)
    with K = number of classes, or K = 1 in binary mode (``spec.training["mode"] == "binary"``;
    sigmoid(channel 0) is the probability of class 1). Classification: (N, K). Logits, not
    probabilities: ``spec.training["output_activation"]`` ("softmax" or "sigmoid") says what an
    exported model should apply (the plugin needs a probability for one-channel outputs).
    Segmentation H and W must be multiples of 32 (U-Net).

``task.model_spec() -> rsdl_qgis_plugin.core.contract.model_spec.ModelSpec``
    model_type (Segmentor / Classifier); class_names and class_colors by output channel; bands
    (1-based, in order); standardization_mean/std and max_pixel_value (inputs are normalised with
    exactly ``spec.normalize(pixels)``); tile_size (chip or image size); resolution_cm (pixel
    size when the CRS is in metres); ignore_index (the label masks' ignore value); training:
    data provenance ("data"), the split ("split"), "class_values" (mask value of each channel),
    "task", "mode", "net", "output", "output_activation", "hyperparameters" and, once validated
    or tested, "metrics" (val_*/test_*: loss, accuracy, macro f1 and iou, per-class
    iou/f1/precision/recall). The data part travels in the checkpoint as ``rsdl_spec`` (ONNX
    metadata form) and the metrics as ``rsdl_metrics``.

Hyperparameters (``task.hparams``, ``checkpoint["hyper_parameters"]``) are plain JSON types.

Batches (all data modules, after ``setup()``): dicts with ``image`` float32 (B, C, H, W),
normalised; segmentation ``mask`` int64 (B, H, W) of channel indices with
``training.data.IGNORE_INDEX`` (-100) for unlabelled or nodata pixels; classification
``label`` int64 (B,). ``datamodule.datasets["train"|"val"|"test"]`` hold the splits;
``datamodule.model_spec()`` the data's spec; ``datamodule.class_table`` the channel-to-class
mapping.
"""
