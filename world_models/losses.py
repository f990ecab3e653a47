"""Loss pieces shared by the models: change-weighted reconstruction and the reward / termination heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from world_models.base import reward_classes


def recon_loss(pred: torch.Tensor, target: torch.Tensor, previous: torch.Tensor, change_weight: float) -> torch.Tensor:
    """MSE where pixels that differ from the previous true frame weigh ``1 + change_weight``.

    Small moving sprites (Pong's ball is about one pixel at 64 x 64) are otherwise drowned by the
    static background. All tensors (B, T, C, H, W); returns a scalar.
    """
    err = (pred - target) ** 2
    if change_weight <= 0:
        return err.mean()
    changed = ((target - previous).abs().amax(dim=2, keepdim=True) > 0.02).to(err.dtype)  # (B, T, 1, H, W)
    return (err * (1.0 + change_weight * changed)).mean()


def head_losses(
    reward_logits: torch.Tensor, term_logits: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Cross-entropy of the reward sign and BCE of termination. Logits (B, T, 3) and (B, T)."""
    target = reward_classes(rewards)  # (B, T)
    reward_ce = F.cross_entropy(reward_logits.reshape(-1, 3), target.reshape(-1))  # (B, T, 3) -> (B*T, 3)
    term_bce = F.binary_cross_entropy_with_logits(term_logits, terminated)
    with torch.no_grad():
        reward_acc = (reward_logits.argmax(-1) == target).float().mean().item()
        term_acc = ((term_logits > 0).float() == terminated).float().mean().item()
    logs = {"reward_ce": reward_ce.item(), "term_bce": term_bce.item(), "reward_acc": reward_acc, "term_acc": term_acc}
    return reward_ce, term_bce, logs
