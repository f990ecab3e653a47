"""The move draw shared by the object dreams."""

from __future__ import annotations

import torch

from world_models.objects.moves import draw_choice


def test_draws_follow_the_softmax_at_its_temperature_and_never_pick_an_impossible_move() -> None:
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, float("-inf"), -200.0])
    g = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        draws = draw_choice(logits.expand(40_000, 2, -1), temperature, g)
        assert draws.shape == (40_000, 2)
        share = torch.bincount(draws.flatten(), minlength=6).double() / draws.numel()
        want = torch.softmax(logits.double() / temperature, 0)
        assert (share - want).abs().max() < 0.006, (share, want)  # 80,000 draws: sd <= 0.0018
        assert share[4] == 0 and share[5] == 0
    again = draw_choice(logits.expand(100, -1), 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(again, draw_choice(logits.expand(100, -1), 1.0, torch.Generator().manual_seed(1)))
