"""The direct preference family (Rafailov et al. 2023 and successors), as pure functions.

Notation: for a pair (chosen y_w, rejected y_l) of a prompt x, ``log π(y|x)`` is the sum of the log-probs of the
response tokens (prompt and padding excluded, :func:`sequence_logps`), and

    h = [log π_θ(y_w|x) − log π_ref(y_w|x)] − [log π_θ(y_l|x) − log π_ref(y_l|x)]

(``reference_free``: the π_ref terms are dropped). Losses per pair (:func:`dpo_losses`), β the inverse temperature,
ε the label smoothing / assumed flip rate:

- ``sigmoid`` (DPO; with ε > 0 conservative DPO): −(1−ε) log σ(βh) − ε log σ(−βh)
- ``robust`` (rDPO, Chowdhury et al. 2024; unbiased under flip rate ε < 1/2): [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1−2ε)
- ``ipo`` (Azar et al. 2023): (h − 1/(2β))², with h from log-probs *averaged* per response token (as TRL and the
  IPO authors' follow-ups do: a sum would scale the target 1/(2β) with the response length)
- ``hinge`` (SLiC, Zhao et al. 2023): max(0, 1 − βh)

Implicit rewards r = β [log π_θ(y|x) − log π_ref(y|x)] (sums) are what researchers log (:func:`implicit_rewards`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.objectives import IGNORE_INDEX

LOSSES = ("sigmoid", "ipo", "hinge", "robust")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of log-probs, count)`` of the labelled tokens of each row (position t predicts token t+1; labels are
    ``IGNORE_INDEX`` on the prompt and padding)."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    valid = labels != IGNORE_INDEX
    logps = torch.gather(F.log_softmax(logits, dim=-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logps * valid).sum(-1), valid.sum(-1)


def preference_margin(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor | None,
                      ref_rejected: torch.Tensor | None) -> torch.Tensor:
    """h per pair: the policy's log-ratio of chosen over rejected, minus the reference's (None: reference-free)."""
    h = chosen - rejected
    if ref_chosen is not None and ref_rejected is not None:
        h = h - (ref_chosen - ref_rejected)
    return h


def dpo_losses(h: torch.Tensor, beta: float, loss: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss of each pair from its margin ``h`` (see the module docstring)."""
    eps = label_smoothing
    if loss == "sigmoid":
        return -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    if loss == "robust":
        return (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    if loss == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    if loss == "hinge":
        return torch.relu(1 - beta * h)
    raise ValueError(f"unknown DPO loss {loss!r}; one of {', '.join(LOSSES)}")


def implicit_rewards(logps: torch.Tensor, ref_logps: torch.Tensor | None, beta: float) -> torch.Tensor:
    """β [log π_θ(y|x) − log π_ref(y|x)] per response (β log π_θ without a reference)."""
    return beta * (logps - ref_logps if ref_logps is not None else logps)
