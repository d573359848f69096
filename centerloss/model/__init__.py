"""The nets (LeNets++, the seed net, ResNet-18), the classifier heads, CenterLoss, and a saved
model built back from its checkpoint."""
from centerloss.model.build import build_from_checkpoint, check_weights
from centerloss.model.center_loss import CenterLoss
from centerloss.model.nets import LeNetsPP, ResNet18, SeedNet, build_model, build_model_for

__all__ = ["CenterLoss", "LeNetsPP", "ResNet18", "SeedNet", "build_from_checkpoint", "build_model",
           "build_model_for", "check_weights"]
