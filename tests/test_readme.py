"""The README's recipes run as written, its grid is a valid grid, and its links resolve:
every page of docs/ is linked from it exactly once."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision
import yaml

from preattn import ResidualBlock
from preattn.ablate import Grid

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_after(heading: str, language: str) -> str:
    """The first ``language`` code block after the line starting with ``heading``."""
    start = README.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match is not None, f"no {language} block after {heading!r}"
    return match.group(1)


def test_recipe_for_your_own_network_runs_and_passes_its_checklist(capsys):
    scope: dict = {}
    exec(_code_after("## Recipe 1", "python"), scope)
    assert scope["y"].shape == (8, 128, 16, 16)
    blocks = [m for m in scope["net"].modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 and all(b.placement == "pre" for b in blocks)
    out = capsys.readouterr().out
    assert "{'1': 0.1" in out and "'2': 0.1" in out  # lambdas(net): λ = 0.1 at the start
    assert "error" not in out and "warning" not in out


def test_recipe_retrofit_runs_on_a_classifier_a_detector_and_a_segmenter(monkeypatch):
    """The recipe's calls with random weights (nothing is downloaded): every Bottleneck of
    ResNet-50's four stages (3 + 4 + 6 + 3 = 16) is converted, 13 in stages 2-4, and the
    classifier's outputs are unchanged (λ = 0)."""
    x = torch.randn(1, 3, 64, 64)
    before: dict[str, torch.Tensor] = {}

    def offline(builder, backbone: bool):
        def build(*args, weights=None, **kwargs):
            if backbone:
                kwargs["weights_backbone"] = None
            model = builder(*args, weights=None, **kwargs).eval()
            if not backbone:
                with torch.no_grad():
                    before["classifier"] = model(x)
            return model

        return build

    detection, segmentation = torchvision.models.detection, torchvision.models.segmentation
    monkeypatch.setattr(torchvision.models, "resnet50", offline(torchvision.models.resnet50, False))
    monkeypatch.setattr(
        detection, "fasterrcnn_resnet50_fpn", offline(detection.fasterrcnn_resnet50_fpn, True)
    )
    monkeypatch.setattr(
        segmentation, "deeplabv3_resnet50", offline(segmentation.deeplabv3_resnet50, True)
    )
    torch.manual_seed(0)
    scope: dict = {}
    exec(_code_after("## Recipe 2", "python"), scope)
    converted = [
        scope["model"].preattn_retrofitted,
        scope["detector"].backbone.preattn_retrofitted,
        scope["segmenter"].backbone.preattn_retrofitted,
    ]
    assert [len(names) for names in converted] == [16, 16, 13]
    assert not any(name.startswith("layer1") for name in converted[2])
    with torch.no_grad():
        torch.testing.assert_close(scope["model"].eval()(x), before["classifier"])


def test_the_grid_to_test_it_on_your_data_is_a_valid_grid_of_six_lines():
    text = _code_after("## Test it on your data", "yaml")
    assert len(text.strip().splitlines()) == 6
    grid = Grid.from_dict(yaml.safe_load(text))
    assert grid.reference == "none" and set(grid.variants) == {"none", "pre", "cbam"}
    assert grid.primary is not None and grid.primary["sesoi"] == 0.003
    assert grid.config("cbam", 0, "runs/x").spec.lam is None  # standard CBAM: uncontrolled


def test_every_docs_page_is_linked_once_and_every_link_resolves():
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    local = [link for link in links if "://" not in link]
    assert local and all((ROOT / link).exists() for link in local), local
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    linked = sorted(link for link in local if link.endswith(".md"))
    assert linked == pages  # each page once, none missing
