"""The notebook's classes, rebuilt here from its text, against the library.

A strict load of ``convert_seed_state_dict(notebook.state_dict())`` into the matching
library module must reproduce the notebook module's outputs (and gradients) in train and
eval mode.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _helpers import randomise_batchnorm
from _reference import NbCBAM, NbPattern3, NbPattern3Controlled, NbSimpleCNN
from preattn import CBAM, ResidualBlock
from preattn.compat import convert_seed_state_dict
from preattn.models import SimpleCNN

# --- helpers ---------------------------------------------------------------------------------


def _assert_equivalent(
    reference: nn.Module,
    ours: nn.Module,
    x: torch.Tensor,
    *,
    check_input_grad: bool = True,
    device: torch.device | str = "cpu",
) -> None:
    """Outputs (train and eval), input gradients and updated BN statistics agree.

    Checked in float64 to 1e-6 (the math is the same), and in float32 to 1e-5 (the library
    fuses the λ-mix into fewer operations, so float32 rounding differs in the last bits).

    ``check_input_grad=False`` where attention sees post-ReLU activations: exact zeros tie
    in the max pooling, and ``torch.max`` (notebook) routes the gradient to one of the tied
    entries while ``amax`` splits it evenly; both are valid subgradients.

    Both run on ``device`` (``pytest --device``).
    """
    reference.to(device)
    ours.to(device)
    x = x.to(device)
    ours.load_state_dict(convert_seed_state_dict(reference.state_dict()), strict=True)
    start = copy.deepcopy(reference.state_dict())
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 1e-5)):
        reference.load_state_dict(start)
        ours.load_state_dict(convert_seed_state_dict(start))
        reference.to(dtype)
        ours.to(dtype)
        for train in (True, False):
            reference.train(train)
            ours.train(train)
            x_ref = x.to(dtype).requires_grad_(True)
            x_ours = x.to(dtype).requires_grad_(True)
            y_ref, y_ours = reference(x_ref), ours(x_ours)
            torch.testing.assert_close(y_ours, y_ref, atol=tol, rtol=tol)
            if check_input_grad:
                y_ref.square().sum().backward()
                y_ours.square().sum().backward()
                torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=10 * tol, rtol=10 * tol)
        # train mode updated running statistics identically
        ref_state = convert_seed_state_dict(reference.state_dict())
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, ref_state[key], atol=tol, rtol=tol)
    reference.float()
    ours.float()


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels,reduction,kernel", [(64, 16, 7), (32, 8, 3), (8, 16, 7)])
def test_cbam_matches_notebook(channels, reduction, kernel, device):
    torch.manual_seed(0)
    reference = NbCBAM(channels, reduction, kernel)
    ours = CBAM(channels, reduction, kernel)
    _assert_equivalent(reference, ours, torch.randn(3, channels, 9, 11), device=device)


@pytest.mark.parametrize("in_ch,out_ch,stride", [(64, 64, 1), (64, 128, 2), (16, 32, 1)])
def test_uncontrolled_block_matches_notebook(in_ch, out_ch, stride, device):
    torch.manual_seed(1)
    reference = NbPattern3(in_ch, out_ch, stride)
    randomise_batchnorm(reference, seed=1)
    ours = ResidualBlock(in_ch, out_ch, stride, lam=None)
    _assert_equivalent(reference, ours, torch.randn(4, in_ch, 12, 12), device=device)


@pytest.mark.parametrize(
    "lam_init,learnable", [(0.1, True), (0.05, False), (0.0, True), (1.0, True)]
)
def test_controlled_block_matches_notebook(lam_init, learnable, device):
    torch.manual_seed(2)
    reference = NbPattern3Controlled(64, 128, 2, lam_init=lam_init, lam_learnable=learnable)
    randomise_batchnorm(reference, seed=2)
    ours = ResidualBlock(64, 128, 2, lam=lam_init, lam_learnable=learnable)
    # the library's own initial logit equals the notebook's (clamped) logit
    torch.testing.assert_close(ours.mix.raw.detach(), reference.lam_logit.detach())
    _assert_equivalent(reference, ours, torch.randn(4, 64, 10, 10), device=device)


def test_simplecnn_matches_notebook(device):
    torch.manual_seed(3)
    reference = NbSimpleCNN(num_classes=10, lam_init=0.1)
    randomise_batchnorm(reference, seed=3)
    ours = SimpleCNN(num_classes=10, lam=0.1)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    x = torch.randn(4, 3, 16, 16)
    _assert_equivalent(reference, ours, x, check_input_grad=False, device=device)


def test_simplecnn_matches_notebook_after_training_steps():
    """Identical optimisation: the same SGD steps keep both models equal (float64, so the
    comparison is not about float32 rounding of differently ordered sums)."""
    torch.manual_seed(4)
    reference = NbSimpleCNN(num_classes=5).double()
    ours = SimpleCNN(num_classes=5).double()
    ours.load_state_dict(convert_seed_state_dict(reference.state_dict()))
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    # parameters() order differs between the two models: map them by converted name
    name_of = {id(p): n for n, p in reference.named_parameters()}
    ours_by_name = dict(ours.named_parameters())
    converted = convert_seed_state_dict({name_of[id(p)]: p for p in reference.parameters()})
    ours_opt = torch.optim.SGD([ours_by_name[k] for k in converted], lr=0.1)
    for _ in range(3):
        x, y = torch.randn(8, 3, 12, 12, dtype=torch.float64), torch.randint(0, 5, (8,))
        for model, opt in ((reference, ref_opt), (ours, ours_opt)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(
        torch.sigmoid(reference.p3_1.lam_logit), ours.block1.mix.value(), atol=1e-12, rtol=1e-12
    )


def test_convert_accepts_dataparallel_prefix_and_rejects_foreign_keys():
    reference = NbCBAM(16)
    wrapped = {f"module.{k}": v for k, v in reference.state_dict().items()}
    ours = CBAM(16)
    ours.load_state_dict(convert_seed_state_dict(wrapped), strict=True)
    with pytest.raises(ValueError, match=r"layer4\.0\.conv1\.weight"):
        convert_seed_state_dict({"layer4.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(TypeError, match="mapping"):
        convert_seed_state_dict([1, 2])  # type: ignore[arg-type]
