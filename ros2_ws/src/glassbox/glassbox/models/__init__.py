"""Shipped models: model cards (sha256, input spec, metrics, reference entropy profile) and integrity checks."""
from glassbox.models.card import (EntropyReference, ModelCard, ModelCardError, ModelIntegrityError, load_card,
                                  save_card, sha256_file, verify_model_file,
                                  verify_weights_file)

__all__ = ["EntropyReference", "ModelCard", "ModelCardError", "ModelIntegrityError", "load_card", "save_card",
           "sha256_file", "verify_model_file", "verify_weights_file"]
