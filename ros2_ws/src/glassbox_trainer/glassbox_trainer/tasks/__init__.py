"""Training tasks, one module per model family: ``lidar``, ``refiner``, ``segmentation``, ``fusion``.

Each module defines one class implementing :class:`glassbox_trainer.task.Task`; the trainer finds it by the
module name (``task: lidar`` in ``config/train/lidar.yaml``). Modules are imported on demand, never here.
"""
