"""LiDAR detection pipeline: xyzi points in, 3D detections, range image, entropy profile and timings out.

One object owns the whole chain: sensor check (``glassbox.lidar.sensors.CloudFit``: a cloud of another sensor is
resampled into the model's geometry) -> spherical projection (numpy) -> SPI network (eager PyTorch or ONNX Runtime
through ``glassbox.runtime``, chosen by ``backend`` in the same config) -> decoding with rotated BEV NMS (numpy).
The entropy profile is built from the network's named feature maps: from ``forward_features`` under torch, from
the extra outputs of the exported graph (``glassbox.export.export_with_features``) under ONNX Runtime, so both
backends give the same profile.

A shipped model is opened from its card (``models/spi_lidar.card.yaml``): the card's ``extra`` section carries the
sensor profile, projection, network and decoding configs the model was trained with, and the file's sha256 is
checked. A card without a sensor profile (written before cards recorded one) gets the profile of its projection's
beam table (``profile_from_projection``: the shipped card's is the HDL-64E table).

*Sampled heads* (``model.head: variational`` / ``mc_dropout``, ``glassbox.lidar.spi``): the model's fixed noise
index (an ``mc_dropout`` graph's ``head_noise`` input; a ``variational`` graph's moments are turned into the
samples at the detections, ``peak_parts``) makes both backends give the same detections; the scores are
Platt-calibrated with the card's ``score_calibration`` and every detection carries the aleatoric and epistemic
parts of its score entropy and of its centre covariance (``LidarDetectionResult.uncertainty``: the variances of
the peak pixel's offset, rotated from its viewing frame into the LiDAR frame and scaled by the card's
``centre_variance_scale``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from glassbox.config import to_dict
from glassbox.entropy import EntropyProfile
from glassbox.lidar.decode import DecodeConfig, Detections3D, binary_entropy, decode
from glassbox.lidar.projection import ProjectionConfig, RangeImage, normalise, project_points
from glassbox.lidar.sensors import CloudFit, SensorError, SensorProfile, profile_from_projection
from glassbox.lidar.spi import SpiConfig, build_model, noise_in_graph, peak_parts, spi_head_type, spi_index_noise
from glassbox.metrics.calibration import platt_apply
from glassbox.pipelines.common import ModelPipeline, PipelineConfig, milliseconds
from glassbox.runtime import Inference

INPUT_NAME = "range_image"


class LidarPipelineError(RuntimeError):
    """The pipeline cannot be built (model file, backend, or configs that do not fit together)."""


@dataclass(frozen=True)
class LidarDetectionConfig(PipelineConfig):
    """Everything the pipeline needs (runtime and probe fields: ``PipelineConfig``). ``model_path`` empty =
    freshly initialised weights (tests and benchmarks only). ``architecture``: the network the torch backend
    builds (``glassbox.lidar.build_model``); ``sensor``: the sensor the model was trained on (None = the profile of
    the projection's rows, ``profile_from_projection``)."""

    model_name: str = "spi"
    architecture: str = "spi"
    sensor: SensorProfile | None = None
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    model: SpiConfig = field(default_factory=SpiConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    score_calibration: tuple[float, float] = (1.0, 0.0)      # Platt (a, b) of a sampled head's scores
    centre_variance_scale: float = 1.0                       # factor of a sampled head's centre variance


@dataclass
class SampledUncertainty:
    """A sampled head's parts of each detection (index-aligned with the detections): score entropy parts (N,)
    nats and centre covariances (N, 3, 3) m^2 in the LiDAR frame, scaled by the card's ``centre_variance_scale``."""

    score_aleatoric: np.ndarray
    score_epistemic: np.ndarray
    centre_cov_aleatoric: np.ndarray
    centre_cov_epistemic: np.ndarray


@dataclass
class LidarDetectionResult:
    """Detections in the LiDAR frame, the projected scan, the entropy profile (None when not probed this frame)
    and the time of each stage in milliseconds (``project``, ``network``, ``entropy``, ``decode``, ``total``)."""

    detections: Detections3D
    range_image: RangeImage
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]
    uncertainty: SampledUncertainty | None = None       # a sampled head's parts (None for a deterministic one)


class LidarDetectionPipeline(ModelPipeline):
    """``pipeline(points (N, >=4) xyzi[, ring]) -> LidarDetectionResult``; raises
    ``glassbox.lidar.sensors.SensorMismatchError`` for a cloud that does not fit the model's sensor geometry and
    ``NoValidPointError`` for one without a finite point within the sensor's range (NaN/inf and out-of-range
    points are dropped before projection and normalisation, counted in ``fit.dropped``).
    ``fit`` (a ``CloudFit``) says what differed in the clouds seen so far (``state``, ``notices``, ``info()``)."""

    config_cls = LidarDetectionConfig
    required_extra = ("projection", "model_config", "decode")
    error = LidarPipelineError

    def __init__(self, cfg: LidarDetectionConfig):
        if cfg.model.in_channels != len(cfg.projection.channels):
            raise LidarPipelineError(f"the network takes {cfg.model.in_channels} channels but the projection "
                                     f"makes {len(cfg.projection.channels)} ({', '.join(cfg.projection.channels)})")
        try:
            self.fit = CloudFit(cfg.sensor or profile_from_projection(cfg.projection), cfg.projection)
        except SensorError as exc:
            raise LidarPipelineError(str(exc)) from None
        self.cfg = cfg
        self._frame = 0
        self.sampled = cfg.model.head != "deterministic"
        self.noise = spi_index_noise(cfg.model).numpy() if self.sampled else None   # the model's fixed index
        example = {INPUT_NAME: np.zeros((1, cfg.model.in_channels, cfg.projection.height, cfg.projection.width),
                                        np.float32)}
        if noise_in_graph(cfg.model):                      # fed to either backend
            example["head_noise"] = self.noise
        self.runtime = self._open(cfg, lambda saved: build_model(cfg.architecture, cfg.model), list(example),
                                  spi_head_type(cfg.model)._fields, example)

    # ------------------------------------------------------------------------------------------ stages
    def project(self, points: np.ndarray, ring: np.ndarray | None = None) -> tuple[RangeImage, np.ndarray]:
        """Range image (of the cloud fitted to the model's sensor) and the normalised network input (1, C, H, W)."""
        points, ring = self.fit(points, ring)
        image = project_points(points, self.cfg.projection, ring=ring)
        return image, normalise(image)[None]

    def network(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], Inference]:
        """Head outputs of one scan (batch index 0) as numpy, and the whole inference (feature maps or in-graph
        entropy)."""
        inputs = {INPUT_NAME: x, "head_noise": self.noise} if noise_in_graph(self.cfg.model) else {INPUT_NAME: x}
        inference = self.infer(inputs)
        return {k: v[0] for k, v in inference.outputs.items()}, inference

    def __call__(self, points: np.ndarray, ring: np.ndarray | None = None) -> LidarDetectionResult:
        t0 = time.perf_counter()
        image, x = self.project(points, ring)
        t1 = time.perf_counter()
        heads, inference = self.network(x)
        t2 = time.perf_counter()
        profile = self.entropy(inference, self._frame)
        t3 = time.perf_counter()
        dets = decode(heads, image.xyz, image.mask, self.cfg.decode)
        parts = None
        if self.sampled:
            dets, parts = self._calibrated(dets, heads, image.xyz)
        t4 = time.perf_counter()
        self._frame += 1
        return LidarDetectionResult(detections=dets, range_image=image, entropy=profile, timings_ms=milliseconds(
            (t0, t1, t2, t3, t4), ("project", "network", "entropy", "decode")), uncertainty=parts)

    def _calibrated(self, dets: Detections3D, heads: dict[str, np.ndarray],
                    xyz: np.ndarray) -> tuple[Detections3D, SampledUncertainty]:
        """A sampled head's detections with Platt-calibrated scores (and their entropy), and their parts at the
        peak pixels: the offset variances (radial, tangential, z) turned by the point's azimuth into the LiDAR
        frame."""
        a, b = self.cfg.score_calibration
        if (a, b) != (1.0, 0.0):
            scores = platt_apply(dets.scores, a, b)
            dets.scores = scores.astype(np.float32)
            dets.score_entropy = binary_entropy(scores).astype(np.float32)
        r, c, k = dets.pixels[:, 0], dets.pixels[:, 1], dets.classes
        p = xyz[r, c].astype(np.float64)
        phi = np.arctan2(p[:, 1], p[:, 0])
        rot = np.zeros((len(r), 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = np.cos(phi), -np.sin(phi), np.sin(phi), np.cos(phi)
        rot[:, 2, 2] = 1.0

        def cov(var: np.ndarray) -> np.ndarray:                  # (3, N) viewing-frame variances -> (N, 3, 3)
            v = self.cfg.centre_variance_scale * var.T.astype(np.float64)
            return np.einsum("nij,nj,nkj->nik", rot, v, rot)

        at = peak_parts(self.cfg.model, heads, k, r, c, self.noise)
        return dets, SampledUncertainty(
            score_aleatoric=at["score_aleatoric"].astype(np.float32),
            score_epistemic=at["score_epistemic"].astype(np.float32),
            centre_cov_aleatoric=cov(at["offset_var_aleatoric"]),
            centre_cov_epistemic=cov(at["offset_var_epistemic"]))


def card_extra(projection: ProjectionConfig, model: SpiConfig, decode_cfg: DecodeConfig,
               sensor: SensorProfile | None = None) -> dict:
    """The ``extra`` entries of an SPI model card (plain types), read back by ``from_card``: the sensor profile
    (name, beam table, columns, ranges, intensity unit and scale, ...) when given, projection, network, decoding."""
    extra = {"sensor": to_dict(sensor)} if sensor is not None else {}
    return {**extra, "projection": to_dict(projection), "model_config": to_dict(model), "decode": to_dict(decode_cfg)}
