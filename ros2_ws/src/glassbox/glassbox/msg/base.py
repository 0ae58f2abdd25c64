"""What every message family shares: the rejection error, message factories, stamps and headers.

Messages are built through a :class:`MessageFactory`, which knows its flavour's types and how it stores primitive
sequences (rclpy: ``array.array``; rosbags: numpy arrays); everything else reads and writes by field name only.
"""
from __future__ import annotations

import array
import functools
import types
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

#: the fixed vocabulary of rejection reasons (diagnostics keys ``rejected/<reason>``, replay counts)
REASONS = ("empty", "zero_size", "missing_field", "bad_field", "bad_layout", "size_mismatch", "bad_encoding",
           "non_finite", "stamp_backwards", "undecodable", "sensor_mismatch")


class ConversionError(ValueError):
    """A message is rejected: ``reason`` is one of :data:`REASONS`, the text (``detail``) says exactly why."""

    def __init__(self, reason: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason '{reason}' (known: {', '.join(REASONS)})")
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class MessageFactory(Protocol):
    """Builds messages of one flavour (rclpy or rosbags) from complete field values."""

    def make(self, typename: str, **fields: Any) -> Any:
        """Instantiate ``typename`` (e.g. ``"sensor_msgs/msg/PointCloud2"``) with the fields given."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        """A dynamic primitive sequence of ``kind`` in {"u8", "u32", "f32", "f64"} from a numpy array."""


_ARRAY_CODES = {"u8": ("B", np.uint8), "u32": ("I", np.uint32), "f32": ("f", np.float32), "f64": ("d", np.float64)}


class ArrayFactoryMixin:
    """``seq`` for message flavours that store primitive sequences as ``array.array`` (rclpy)."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        code, dtype = _ARRAY_CODES[kind]
        out = array.array(code)
        out.frombytes(np.ascontiguousarray(values, dtype=dtype).reshape(-1).view(np.uint8).data)
        return out


class NumpyFactoryMixin:
    """``seq`` for message flavours that store primitive sequences as numpy arrays (rosbags)."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        return np.ascontiguousarray(values, dtype=_ARRAY_CODES[kind][1])


_PRIMITIVE_DTYPES = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
                     "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
                     "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64}


class RosbagsFactory(NumpyFactoryMixin):
    """Builds rosbags message dataclasses from a rosbags typestore (which must know every type used).

    Like rclpy constructors, fields not given take their default value (zero, empty, nested defaults).
    """

    def __init__(self, typestore: Any):
        self.typestore = typestore

    def make(self, typename: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[typename]
            fielddefs = self.typestore.fielddefs[typename][1]
        except KeyError:
            raise KeyError(f"message type '{typename}' is not registered in the rosbags typestore") from None
        for name, desc in fielddefs:
            if name not in fields:
                fields[name] = self._default(desc)
        return cls(**fields)

    def _default(self, desc: Any) -> Any:
        kind, spec = desc
        kind = int(kind)
        if kind == 1:                                  # BASE: (type, string bound)
            t = spec[0]
            return "" if t == "string" else (False if t == "bool" else (0.0 if t.startswith("float") else 0))
        if kind == 2:                                  # NAME: nested message
            return self.make(spec)
        sub, count = spec                              # ARRAY (3, fixed) or SEQUENCE (4)
        if int(sub[0]) == 1 and sub[1][0] in _PRIMITIVE_DTYPES:
            return np.zeros(count if kind == 3 else 0, dtype=_PRIMITIVE_DTYPES[sub[1][0]])
        return [self._default(sub) for _ in range(count)] if kind == 3 else []


def bind(factory: MessageFactory, builders: Iterable[Callable[..., Any]]) -> types.SimpleNamespace:
    """``builders`` (``make_<name>(factory, ...)``) with ``factory`` bound, by ``<name>``: ``ns.image(arr, enc, h)``."""
    return types.SimpleNamespace(**{b.__name__.removeprefix("make_"): functools.partial(b, factory)
                                    for b in builders})


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_time(factory: MessageFactory, stamp_ns: int) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return factory.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    return factory.make("std_msgs/msg/Header", stamp=make_time(factory, stamp_ns), frame_id=str(frame_id))


def copy_header(factory: MessageFactory, header: Any) -> Any:
    """A fresh header with the stamp and frame of ``header`` (which may be of another flavour)."""
    return make_header(factory, stamp_to_ns(header.stamp), header.frame_id)

