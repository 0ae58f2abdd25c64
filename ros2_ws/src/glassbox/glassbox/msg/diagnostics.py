"""diagnostic_msgs: DiagnosticStatus / DiagnosticArray from plain values, and their key-values read back."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glassbox.msg.base import MessageFactory, make_header


def make_diagnostic_status(factory: MessageFactory, level: int, name: str, message: str, hardware_id: str,
                           values: Mapping[str, str]) -> Any:
    """diagnostic_msgs/DiagnosticStatus with one KeyValue per item of ``values`` (in their order)."""
    return factory.make("diagnostic_msgs/msg/DiagnosticStatus", level=int(level), name=str(name),
                        message=str(message), hardware_id=str(hardware_id),
                        values=[factory.make("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v))
                                for k, v in values.items()])


def make_diagnostic_array(factory: MessageFactory, statuses: Sequence[Any], stamp_ns: int) -> Any:
    return factory.make("diagnostic_msgs/msg/DiagnosticArray", header=make_header(factory, stamp_ns, ""),
                        status=list(statuses))


def status_values(status: Any, prefix: str = "") -> dict[str, str]:
    """The key-values of a DiagnosticStatus whose key starts with ``prefix``, the prefix removed."""
    return {kv.key[len(prefix):]: kv.value for kv in status.values if kv.key.startswith(prefix)}
