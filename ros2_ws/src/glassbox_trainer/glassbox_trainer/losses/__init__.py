"""Training losses: logit KD (``kd``), SRM feature distillation (``srm``), teacher-free MOSAKD (``mosakd``)
and the named ``WeightedSum`` that combines and logs them. Eloss comes from ``glassbox.entropy``."""
from glassbox_trainer.losses.kd import KDError, KDLoss, kd_loss
from glassbox_trainer.losses.mosakd import MOSAKDError, MOSAKDLoss, dense_samples, knn_soft_labels, mosakd_loss
from glassbox_trainer.losses.srm import SparseDictionary, SRMError, SRMLoss, srm_terms
from glassbox_trainer.losses.weighted_sum import WeightedSum, WeightedSumError

__all__ = ["KDError", "KDLoss", "MOSAKDError", "MOSAKDLoss", "SRMError", "SRMLoss", "SparseDictionary",
           "WeightedSum", "WeightedSumError", "dense_samples", "kd_loss", "knn_soft_labels", "mosakd_loss",
           "srm_terms"]
