"""glassbox_msgs: EntropyProfile, DetectionUncertaintyArray and FusionWeights <-> numpy."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.msg.base import ConversionError, MessageFactory, stamp_to_ns


def make_entropy_profile(factory: MessageFactory, profile: Any, header: Any) -> Any:
    """glassbox_msgs/EntropyProfile from an object with the fields of ``glassbox.entropy.EntropyProfile``."""
    params = dict(profile.estimator_params)
    return factory.make(
        "glassbox_msgs/msg/EntropyProfile", header=header, model_name=str(profile.model_name),
        estimator=str(profile.estimator), estimator_param_names=[str(k) for k in params],
        estimator_param_values=[str(v) for v in params.values()],
        layer_names=[str(n) for n in profile.layer_names],
        entropy_nats=factory.seq(np.asarray(profile.entropy_nats, np.float64), "f64"),
        delta_nats=factory.seq(np.asarray(profile.delta_nats, np.float64), "f64"),
        samples_per_layer=factory.seq(np.asarray(profile.samples_per_layer, np.uint32), "u32"),
        sample_dim_per_layer=factory.seq(np.asarray(profile.sample_dim_per_layer, np.uint32), "u32"),
        eloss_variance=float(profile.eloss_variance), eloss_direction=float(profile.eloss_direction),
        compute_time_ms=float(profile.compute_time_ms))


@dataclass
class EntropyProfileFields:
    """Plain-python content of an EntropyProfile message (see glassbox_msgs/msg/EntropyProfile.msg)."""

    stamp_ns: int
    frame_id: str
    model_name: str
    estimator: str
    estimator_params: dict[str, str]
    layer_names: list[str]
    entropy_nats: np.ndarray
    delta_nats: np.ndarray
    samples_per_layer: np.ndarray
    sample_dim_per_layer: np.ndarray
    eloss_variance: float
    eloss_direction: float
    compute_time_ms: float


def entropy_profile_from_msg(msg: Any) -> EntropyProfileFields:
    """Decode an EntropyProfile message, checking that its per-layer arrays agree in length."""
    layers = list(msg.layer_names)
    arrays = {name: np.asarray(getattr(msg, name), dtype=np.float64)
              for name in ("entropy_nats", "delta_nats", "samples_per_layer", "sample_dim_per_layer")}
    for name, arr in arrays.items():
        if name in ("entropy_nats", "delta_nats") and arr.size != len(layers):
            raise ConversionError("size_mismatch", f"EntropyProfile '{name}' has {arr.size} values for "
                                  f"{len(layers)} layers")
    if len(msg.estimator_param_names) != len(msg.estimator_param_values):
        raise ConversionError("size_mismatch", "EntropyProfile estimator_param_names and estimator_param_values "
                              "differ in length")
    return EntropyProfileFields(
        stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=msg.header.frame_id, model_name=msg.model_name,
        estimator=msg.estimator,
        estimator_params=dict(zip(msg.estimator_param_names, msg.estimator_param_values)),
        layer_names=layers, entropy_nats=arrays["entropy_nats"], delta_nats=arrays["delta_nats"],
        samples_per_layer=arrays["samples_per_layer"].astype(np.uint32),
        sample_dim_per_layer=arrays["sample_dim_per_layer"].astype(np.uint32),
        eloss_variance=float(msg.eloss_variance), eloss_direction=float(msg.eloss_direction),
        compute_time_ms=float(msg.compute_time_ms))


@dataclass
class DetectionUncertainties:
    """Per-detection uncertainty, index-aligned with a detection array (NaN where not computed)."""

    score_entropy_nats: np.ndarray
    top_score: np.ndarray
    center_std: np.ndarray | None = None
    size_std: np.ndarray | None = None
    yaw_std_rad: np.ndarray | None = None
    ids: list[str] | None = None
    score_aleatoric_nats: np.ndarray | None = None
    score_epistemic_nats: np.ndarray | None = None
    center_std_aleatoric: np.ndarray | None = None
    center_std_epistemic: np.ndarray | None = None


def make_detection_uncertainty_array(factory: MessageFactory, unc: DetectionUncertainties, header: Any) -> Any:
    n = len(unc.score_entropy_nats)
    nan = np.full(n, np.nan)
    optional = ("center_std", "size_std", "yaw_std_rad", "score_aleatoric_nats", "score_epistemic_nats",
                "center_std_aleatoric", "center_std_epistemic")
    values = {k: nan if getattr(unc, k) is None else np.asarray(getattr(unc, k), np.float64) for k in optional}
    ids = unc.ids if unc.ids is not None else [str(i) for i in range(n)]
    items = [factory.make("glassbox_msgs/msg/DetectionUncertainty", detection_id=str(ids[i]),
                          score_entropy_nats=float(unc.score_entropy_nats[i]), top_score=float(unc.top_score[i]),
                          **{k: float(v[i]) for k, v in values.items()})
             for i in range(n)]
    return factory.make("glassbox_msgs/msg/DetectionUncertaintyArray", header=header, detections=items)


def make_fusion_weights(factory: MessageFactory, sensor_names: Sequence[str], level_weights: np.ndarray,
                        header: Any, sensor_age_s: Sequence[float] | None = None,
                        degraded_sensors: Sequence[str] = ()) -> Any:
    """glassbox_msgs/FusionWeights from per-level weights (levels, sensors)."""
    lw = np.asarray(level_weights, dtype=np.float64).reshape(-1, len(sensor_names))
    ages = np.zeros(len(sensor_names)) if sensor_age_s is None else np.asarray(sensor_age_s, np.float64)
    return factory.make("glassbox_msgs/msg/FusionWeights", header=header, sensor_names=list(sensor_names),
                        weights=factory.seq(lw.mean(axis=0), "f64"), level_weights=factory.seq(lw.reshape(-1), "f64"),
                        num_levels=int(lw.shape[0]), sensor_age_s=factory.seq(ages, "f64"),
                        degraded_sensors=list(degraded_sensors))
