"""Sequence classification from a confusion matrix (rows: true class, columns: predicted), as pure functions: what
the held-out metrics of ``method=classify`` compute once the counts of every batch and device are summed."""

from __future__ import annotations

import torch


def confusion(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` of a batch."""
    return torch.bincount(target * num_classes + preds, minlength=num_classes ** 2).view(num_classes, num_classes)


def accuracy(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.diagonal().sum() / matrix.sum().clamp(min=1)


def macro_f1(matrix: torch.Tensor) -> torch.Tensor:
    """The mean over classes of 2 TP / (2 TP + FP + FN); a class never true nor predicted scores 0 (torchmetrics'
    default for ``MulticlassF1Score(average="macro")``)."""
    matrix = matrix.double()
    tp = matrix.diagonal()
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    return (2 * tp / (2 * tp + fp + fn).clamp(min=1)).mean()
