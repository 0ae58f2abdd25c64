"""Trainer tests share two CPU cores with the rest of the suite: one torch thread each."""
import torch

torch.set_num_threads(1)
