"""Small reference architectures used by DP training, attacks and audits (plain ``torch.nn.Module``s).

All of them avoid layers that mix examples within a batch (no BatchNorm), so DP-SGD can clip
per-example gradients; see :mod:`privlab.models.registry` for construction by name.
"""

from privlab.models.gpt import GPT, GPTConfig
from privlab.models.registry import MODELS, build_model
from privlab.models.vision import MLP, SmallCNN

__all__ = ["GPT", "MLP", "MODELS", "GPTConfig", "SmallCNN", "build_model"]
