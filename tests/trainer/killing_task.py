"""A task that is another task, except that its process dies by SIGKILL during training step ``kill_at_step``.

The kill comes from inside the step (in ``loss``, before the step's optimiser update), so it lands at the same
point of every run: after the last checkpoint and after log rows that the checkpoint does not cover, the state
a crash leaves behind. Everything else is delegated unchanged, so up to the kill the run is the inner task's.
"""
from __future__ import annotations

import os
import signal

from glassbox_trainer.task import build_task


class KillingTask:
    name = "killing"
    metric = ""                      # both replaced by the inner task's in __init__
    eloss_groups: list[list[str]] = []

    def __init__(self, cfg: dict):
        cfg = dict(cfg)
        self.kill_at_step = int(cfg.pop("kill_at_step", 0))
        self.inner = build_task(cfg.pop("task"), cfg.pop("cfg", {}))
        self.metric, self.eloss_groups = self.inner.metric, self.inner.eloss_groups
        self.classes = getattr(self.inner, "classes", ())
        self.training_steps = 0

    def loss(self, model, batch):
        if model.training:                                      # training steps only (evaluation runs in eval mode)
            self.training_steps += 1
            if self.training_steps == self.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.loss(model, batch)

    def build_model(self, size: str = "default"):
        return self.inner.build_model(size)

    def datasets(self):
        return self.inner.datasets()

    def collate(self, items: list) -> dict:
        return self.inner.collate(items)

    def evaluate(self, model, loader) -> dict[str, float]:
        return self.inner.evaluate(model, loader)

    def example_inputs(self, batch: dict):
        return self.inner.example_inputs(batch)

    def export(self, model, path: str) -> dict:
        return self.inner.export(model, path)
