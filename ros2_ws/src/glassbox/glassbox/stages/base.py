"""What all stages share: the output record and the probe settings recorded in a model card."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from glassbox.entropy import ProbeConfig
from glassbox.models.card import ModelCard


@dataclass
class StageOutput:
    """Output messages by topic suffix, and the pipeline result they came from."""

    messages: dict[str, Any]
    result: Any


def probe_config_for_card(card: ModelCard, **overrides: Any) -> ProbeConfig:
    """The probe settings the card's reference entropy profile was recorded with (so that live profiles are
    comparable to it), with ``overrides`` (e.g. ``every_n``, ``enabled``) applied."""
    base = ProbeConfig()
    ref = card.entropy_reference
    if ref is not None:
        p = ref.estimator_params
        none_or_int = (lambda v: None if v in (None, "None", "") else int(v))
        base = ProbeConfig(estimator=ref.estimator, k=int(p.get("k", base.k)),
                           sample_mode=p.get("sample_mode", base.sample_mode),
                           max_samples=none_or_int(p.get("max_samples", base.max_samples)),
                           max_dim=none_or_int(p.get("max_dim", base.max_dim)),
                           seed=int(p.get("seed", base.seed)), batch=p.get("batch", base.batch))
    return replace(base, **overrides)
