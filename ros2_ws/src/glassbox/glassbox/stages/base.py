"""What all stages share: the ``feed`` interface, the output record, stamp checking and card probe settings.

A stage is fed one input message at a time: ``stage.feed(role, msg, now_ns)`` decodes and validates it, checks
that its stamp does not go backwards on that role (``glassbox.sync.StampGuard``; a jump back of more than its
``jump_threshold_s`` restarts the role instead: ``reset(role)``), and runs the pipeline once it has what it needs;
it returns a :class:`StageOutput`, or None while it waits (a fusion stage waiting for the partner of a pair). Bad
input raises :class:`~glassbox.msg.ConversionError` whose ``reason`` is one of :data:`glassbox.msg.REASONS`.
``now_ns`` is the caller's clock: the node's clock in a node, the bag's receive time in a replay, so both run the
same logic.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from glassbox import capabilities
from glassbox.entropy import ProbeConfig
from glassbox.models.card import ModelCard
from glassbox.msg import MessageFactory, stamp_to_ns
from glassbox.sync import StampGuard


@dataclass
class StageOutput:
    """Output messages by topic suffix, the pipeline result they came from, and what a replay keeps of the frame.

    ``frame`` holds per-frame facts for the replay's frame records and metrics (keys starting with ``_`` are
    objects for metrics, not for printing); ``sample`` the arrays a report draws for this frame.
    """

    messages: dict[str, Any]
    result: Any
    stamp_ns: int = 0                  # the input header's stamp, which every output carries
    frame: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)


class Stage:
    """Base of the message-level stages. A subclass names its ``capability`` and implements ``decode`` and
    ``step``; ``feed`` is the same for all."""

    capability = ""

    def __init__(self, pipeline: Any, factory: MessageFactory):
        self.pipeline, self.factory = pipeline, factory
        self.stamps = StampGuard()
        self.state = ""             # a degraded state the node reports in its diagnostics ("" = nominal)

    @property
    def outputs(self) -> dict[str, str]:
        """Topic suffix -> message type, from the capability record."""
        return capabilities.get(self.capability).outputs

    @property
    def roles(self) -> tuple[str, ...]:
        return capabilities.get(self.capability).roles

    @property
    def latched(self) -> dict[str, str]:
        """Topic suffix -> message type of what is published once, transient local (``latched_messages``)."""
        return capabilities.get(self.capability).latched

    def latched_messages(self, stamp_ns: int) -> dict[str, Any]:
        """The messages of the ``latched`` topics (e.g. ``label_info``), with header stamp ``stamp_ns``."""
        return {}

    def feed(self, role: str, msg: Any, now_ns: int) -> StageOutput | None:
        """Decode, validate and run one input message (see the module docstring)."""
        if role not in self.roles:
            raise KeyError(f"{self.capability} takes no '{role}' input (roles: {', '.join(self.roles)})")
        data = self.decode(role, msg)
        if self.stamps.check(role, stamp_to_ns(msg.header.stamp)):
            self.reset(role)
        return self.step(role, data, msg.header, int(now_ns))

    def reset(self, role: str) -> None:
        """Forget what is kept of ``role``'s past: its time restarted (the stamp guard has already restarted)."""

    def dropped(self) -> int:
        """Inputs accepted but never run (e.g. frames that found no partner to pair with)."""
        return 0

    def decode(self, role: str, msg: Any) -> Any:
        """The decoded, validated input (raises ``ConversionError``)."""
        raise NotImplementedError

    def step(self, role: str, data: Any, header: Any, now_ns: int) -> StageOutput | None:
        """Run on decoded input; None while waiting for more input."""
        raise NotImplementedError

    def info(self) -> dict[str, str]:
        """Facts for the node's diagnostics (e.g. synchroniser drops)."""
        return {}


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
