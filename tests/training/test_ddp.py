"""Scaling out: a 2-process DDP fit on the CPU (gloo), as on several GPUs or nodes.

Lightning's DDP launcher starts rank 1 by running the same script again, so the fit runs in a
script of its own (not inside pytest). Each rank writes what it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import lightning.pytorch as pl
    from training.data import ChipsDataModule
    from training.tasks import SegmentationTask

    chips, out = sys.argv[1], sys.argv[2]

    class Seen(pl.Callback):
        def __init__(self):
            self.samples = []
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.samples += [hashlib.md5(image.numpy().tobytes()).hexdigest() for image in batch["image"]]
        def on_train_end(self, trainer, pl_module):
            report = {
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
                "backend": trainer.strategy.process_group_backend,
                "samples": self.samples,
                "val_loss": float(trainer.callback_metrics["val_loss"]),
            }
            with open(f"{out}/rank{trainer.global_rank}.json", "w") as stream:
                json.dump(report, stream)

    data = ChipsDataModule(chips, batch_size=2, augment=False, cache_dir=f"{out}/cache")
    task = SegmentationTask(data.num_classes, data.in_channels, loss="ce+dice", class_weights="auto")
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, limit_train_batches=2,
        limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=out, callbacks=[Seen()],
    )
    trainer.fit(task, datamodule=data)
    """
)


def test_two_process_cpu_ddp_fit(chips_folder, tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(script), str(chips_folder), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert [r["backend"] for r in reports] == ["gloo", "gloo"]
    assert all(len(r["samples"]) == 4 for r in reports)  # 2 batches of 2 on each rank
    assert not set(reports[0]["samples"]) & set(reports[1]["samples"])  # the sampler shards the data
    assert reports[0]["val_loss"] == reports[1]["val_loss"]  # synced across ranks
