"""Defensive Quantization (Lin, Gan and Han, ICLR 2019): quantization-aware fine-tuning with a
Lipschitz regularizer, exported on exactly its trained grid."""

from deploy_robust.transforms.dq.finetune import DQRequest, defensive_quantization
from deploy_robust.transforms.dq.model import DQConfig, deploy_form, is_dq_model, prepare_dq, prepare_structure
from deploy_robust.transforms.dq.regularizer import lipschitz_penalty, orthogonality_penalty, spectral_norms

__all__ = [
    "DQConfig",
    "DQRequest",
    "defensive_quantization",
    "deploy_form",
    "is_dq_model",
    "lipschitz_penalty",
    "orthogonality_penalty",
    "prepare_dq",
    "prepare_structure",
    "spectral_norms",
]
