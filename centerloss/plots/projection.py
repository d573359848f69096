"""The one PCA that draws features wider than 2-D, for `cl plot` and the live view alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from centerloss.errors import PlotError

Points = np.ndarray | torch.Tensor


def _array(x: Points) -> np.ndarray:
    return x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class Projection:
    """Identity for 2-D features; otherwise the top two principal axes of one fitted sample."""
    feature_dim: int
    mean: np.ndarray | None = None          # [D]
    axes: np.ndarray | None = None          # [D, 2], orthonormal columns
    fitted_on: int | None = None            # the epoch it was fitted on
    kept: float = 1.0                       # the share of the fitted sample's variance it keeps

    @classmethod
    def fit(cls, features: Points, epoch: int, like: "Projection | None" = None) -> "Projection":
        """The projection of features; with `like`, each axis keeps the sign of like's, so that
        the picture does not mirror from one epoch to the next."""
        x = _array(features)
        d = x.shape[1]
        if d == 1:
            raise PlotError("1-D features cannot be drawn as a 2-D scatter; "
                            "train with --feature-dim 2 (or wider, drawn through PCA)")
        if d == 2:
            return cls(2)
        mean = x.mean(0)
        # eigh of the D x D covariance: cheap for any N, and exact enough in float64.
        values, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False))
        axes = vectors[:, ::-1][:, :2].copy()
        if like is not None and like.axes is not None:
            sign = np.sign(np.sum(axes * like.axes, axis=0))
        else:   # eigenvectors have no sign: fix one, so the same features give the same picture
            sign = np.sign(axes[np.abs(axes).argmax(0), [0, 1]])
        kept = float(values[::-1][:2].sum() / max(values.sum(), 1e-12))
        return cls(d, mean, axes * np.where(sign == 0, 1.0, sign), epoch, kept)

    @property
    def is_pca(self) -> bool:
        return self.axes is not None

    def __call__(self, x: Points) -> np.ndarray:
        points = _array(x)
        if self.axes is None:
            return points
        return (points - self.mean) @ self.axes

    def kept_variance(self, x: Points) -> float:
        """The share of x's variance that lies in the plane drawn (1 for 2-D features)."""
        if self.axes is None:
            return 1.0
        centred = _array(x)
        centred = centred - centred.mean(0)
        total = float((centred ** 2).sum())
        return float(((centred @ self.axes) ** 2).sum()) / total if total > 0 else 1.0

    def note(self) -> str:
        return (f"PCA of {self.feature_dim}-D features, fitted in epoch {self.fitted_on} "
                f"({100 * self.kept:.0f}% of their variance)")
