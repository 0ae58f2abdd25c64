"""The trainer's error type."""


class TrainError(RuntimeError):
    """A run cannot start or continue (bad resume state, missing teacher, task outputs missing)."""


def need_output(outputs, key: str, why: str):
    """``outputs[key]`` of a task's ``loss()``, or a :class:`TrainError` naming what needs it."""
    if key not in outputs:
        raise TrainError(f"the task's loss() outputs have no '{key}', which {why} needs "
                         f"(outputs: {', '.join(outputs)})")
    return outputs[key]
