"""cl: deep features with softmax + center loss (Wen et al., ECCV 2016)."""
from .config import Config
from .loss import CenterLoss
from .models import LeNetsPP, SeedNet, build_model

__all__ = ["CenterLoss", "Config", "LeNetsPP", "SeedNet", "build_model"]
__version__ = "0.1.0"
