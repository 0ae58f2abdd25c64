"""Per-layer differential entropy: estimators, feature-map sampling, probes, Eloss, entropy guidance, FMCS.

- ``estimators``: ``knn_entropy`` (Kozachenko-Leonenko), ``gaussian_entropy``, ``channel_entropy`` (nats, torch,
  differentiable, (n, d) -> scalar or (b, n, d) -> (b,)).
- ``sampling``: ``feature_samples`` (channels or spatial positions as samples, seeded subsampling).
- ``probe``: ``ProbeConfig``, ``EntropyProfile``, ``profile_from_features`` (torch or numpy feature maps, e.g.
  ONNX Runtime outputs), ``EntropyProbe`` (forward hooks).
- ``eloss``: ``eloss_variance``, ``eloss_direction`` (as printed), ``eloss_direction_bounded``, ``eloss_terms``
  (both sums over layer groups).
- ``guidance``: closed-form entropy changes of dense and conv layers.
- ``fmcs``: convergence-phase markers from a loss curve (``fmcs``), ``stratified_split``, ``FmceNet``.
"""
from .eloss import (ElossError, eloss_direction, eloss_direction_bounded, eloss_terms, eloss_variance,
                    entropy_deltas)
from .estimators import (ESTIMATORS, EntropyError, channel_entropy, gaussian_entropy, knn_entropy,
                         log_unit_ball_volume)
from .fmcs import FmceNet, FmcsError, FmcsResult, cqi, fmcs, smooth_losses, stratified_split
from .guidance import (GuidanceError, conv_entropy_change, conv_entropy_statistics,
                       dense_entropy_change, guidance_penalty)
from .probe import (EntropyProbe, EntropyProfile, ProbeConfig, ProbeConfigError, ProbeError, estimate_layers,
                    layer_entropy, layer_samples, profile_from_features)
from .sampling import SAMPLE_MODES, feature_samples

__all__ = [
    "ESTIMATORS", "SAMPLE_MODES", "ElossError", "EntropyError", "EntropyProbe", "EntropyProfile",
    "FmceNet", "FmcsError", "FmcsResult", "GuidanceError", "ProbeConfig", "ProbeConfigError",
    "ProbeError", "channel_entropy", "conv_entropy_change", "conv_entropy_statistics", "cqi",
    "dense_entropy_change", "eloss_direction", "eloss_direction_bounded", "eloss_terms", "eloss_variance",
    "entropy_deltas",
    "estimate_layers", "feature_samples", "fmcs", "gaussian_entropy", "guidance_penalty", "knn_entropy",
    "layer_entropy", "layer_samples", "log_unit_ball_volume", "profile_from_features", "smooth_losses",
    "stratified_split",
]
