"""Small tensor helpers that several layers share."""

from __future__ import annotations

import torch


def first_of_each_group(groups: torch.Tensor, limit: int) -> torch.Tensor:
    """A mask of the first `limit` rows of each group, rows in the order given (`groups` [N] integer ids,
    in any order: a row's rank counts the earlier rows of its group), for all groups at once."""
    order = torch.argsort(groups, stable=True)
    grouped = groups[order]
    rank = torch.arange(len(groups), device=groups.device) - torch.searchsorted(grouped, grouped)
    first = torch.empty(len(groups), dtype=torch.bool, device=groups.device)
    first[order] = rank < limit
    return first
