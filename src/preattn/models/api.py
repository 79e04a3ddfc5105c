"""The model API timm's models share, for preattn's networks.

A network built on :class:`ClassifierNet` has ``num_classes``, ``num_features``,
``head_hidden_size``, ``feature_info`` (one dict per feature level: ``num_chs``,
``reduction``, ``module``), ``forward_features``, ``forward_head(x, pre_logits=False)``,
``get_classifier``, ``reset_classifier(num_classes, global_pool=None)``,
``set_grad_checkpointing`` and ``forward_intermediates``, as timm's models do.

Head: ``logits = fc(dropout(hidden(pool(features))))`` with ``pool`` one of ``avg`` (mean
over H, W), ``max``, ``avgmax`` (their average) or ``""`` (no pooling, only with
``num_classes=0``), and ``hidden`` the identity or, for MobileNetV3, ``hardswish(Linear)``
(B, num_features) -> (B, head_hidden_size); ``num_classes=0`` makes ``fc`` the identity, so
the network returns the pooled (and hidden) features.
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from .. import _validate

__all__ = ["GLOBAL_POOLS", "ClassifierNet"]

GLOBAL_POOLS = ("avg", "max", "avgmax", "")


def _pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "avg":
        return x.mean(dim=(2, 3))
    if kind == "max":
        return x.amax(dim=(2, 3))
    if kind == "avgmax":
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))
    return x


class ClassifierNet(nn.Module):
    """Base of preattn's networks: the classifier head and timm's model API.

    Subclasses set ``self.feature_info`` and implement :meth:`feature_stages` (the
    forward pass as ``(name, module)`` stages whose outputs are the feature levels, in
    order, plus modules between them named with a leading ``_``).
    """

    # plain Python data TorchScript need not type (timm's models do the same)
    __jit_ignored_attributes__ = ["feature_info"]  # noqa: RUF012

    def _init_head(
        self,
        num_features: int,
        num_classes: int,
        global_pool: str,
        drop_rate: float,
        hidden: int = 0,
    ) -> None:
        _validate.non_negative_int("num_classes", num_classes)
        self.num_features = self.head_hidden_size = num_features
        self.head_hidden: nn.Module = nn.Identity()
        if hidden:
            self.head_hidden = nn.Sequential(nn.Linear(num_features, hidden), nn.Hardswish())
            self.head_hidden_size = hidden
        self.drop_rate = float(drop_rate)
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.grad_checkpointing = False
        self.reset_classifier(num_classes, global_pool)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head for ``num_classes`` (0: none, the pooled features are returned)."""
        _validate.non_negative_int("num_classes", num_classes)
        if global_pool is not None:
            _validate.choice("global_pool", global_pool, GLOBAL_POOLS)
            self.global_pool = global_pool
        if self.global_pool == "" and num_classes:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0")
        if self.global_pool == "" and not isinstance(self.head_hidden, nn.Identity):
            # unpooled feature maps: the hidden layer (on pooled vectors) goes too, as timm's
            self.head_hidden = nn.Identity()
            self.head_hidden_size = self.num_features
        self.num_classes = num_classes
        self.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, num_features, h, w) -> logits (B, num_classes), or the pooled features."""
        x = self.head_hidden(_pool(x, self.global_pool))
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of keeping them.

        (A λ warm-up counter then advances on the recomputation too.)
        """
        self.grad_checkpointing = bool(enable)

    def feature_stages(self) -> Sequence[tuple[str, nn.Module]]:
        raise NotImplementedError

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if (
            self.grad_checkpointing
            and self.training
            and isinstance(module, nn.Sequential)
            and not torch.jit.is_scripting()
        ):
            return checkpoint_sequential(module, len(module), x, use_reentrant=False)
        return module(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> the last feature map (see ``feature_info``)."""
        if torch.jit.is_scripting():
            return self.forward_stages(x)
        else:
            _validate.image_batch(x, self.in_chans, type(self).__name__)
            for _, module in self.feature_stages():
                x = self._run(module, x)
            return x

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        """The stages of :meth:`feature_stages` written out, for TorchScript."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of the levels ``indices`` (timm's semantics: None all, an int
        the last n, a list those levels, negative from the end) and the final features."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = self._take_indices(indices)
        _validate.image_batch(x, self.in_chans, type(self).__name__)
        intermediates: list[torch.Tensor] = []
        level = -1
        for name, module in self.feature_stages():
            x = self._run(module, x)
            if name.startswith("_"):
                continue
            level += 1
            if level in take:
                intermediates.append(x)
            if stop_early and level >= max(take):
                break
        if intermediates_only:
            return intermediates
        return x, intermediates

    def _take_indices(self, indices: int | list[int] | None) -> list[int]:
        count = len(self.feature_info)
        if indices is None:
            return list(range(count))
        if isinstance(indices, int):
            if not 0 < indices <= count:
                raise ValueError(f"indices must be in 1..{count}, got {indices}")
            return list(range(count - indices, count))
        chosen = [i if i >= 0 else count + i for i in indices]
        if any(not 0 <= i < count for i in chosen):
            raise ValueError(f"indices must lie in [-{count}, {count}), got {list(indices)}")
        return chosen

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Keep what the feature levels ``indices`` need; drop the head (timm's API)."""
        take = self._take_indices(indices)
        stages = [name for name, _ in self.feature_stages()]
        levels = [i for i, name in enumerate(stages) if not name.startswith("_")]
        for name in stages[levels[max(take)] + 1 :]:
            setattr(self, name.lstrip("_"), nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return take
