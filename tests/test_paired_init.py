"""Paired initialisation: variants of one seed share their common layers' starting weights."""

from __future__ import annotations

import pytest
import torch

from _helpers import TINY_CONFIG
from preattn.data.registry import DATASET_SPECS
from preattn.models import create_model
from preattn.train import TrainConfig, build_model, train
from preattn.train.paired_init import ATTENTION_STREAM

INFO = DATASET_SPECS["synthetic"].info(16)

VARIANTS = {
    "none": {"placement": "none"},
    "pre": {"placement": "pre"},
    "branch": {"placement": "branch", "lam": None},
    "se-pre": {"placement": "pre", "attention": "se", "lam": None},
    "post": {"placement": "post", "attention": "eca"},
}


def _start(model: str, seed: int, **options) -> dict[str, torch.Tensor]:
    config = TrainConfig(dataset="synthetic", image_size=16, model=model, seed=seed, **options)
    return build_model(config, INFO, initialise=True).state_dict()


@pytest.mark.parametrize("model", ["simplecnn", "resnet18", "mobilenet_v2"])
def test_variants_of_a_seed_start_from_the_plain_network_of_that_seed(model):
    seed = 3
    torch.manual_seed(seed)  # the plain network, built the ordinary way
    plain = create_model(model, num_classes=INFO.num_classes, image_size=16, placement="none")
    expected = plain.state_dict()
    before = torch.get_rng_state()
    for name, options in VARIANTS.items():
        start = _start(model, seed, **options)
        shared = [k for k in expected if k in start]
        # every layer of the plain network exists in the variant: stem, convs, BN, head
        assert shared == list(expected), name
        for key in shared:
            assert torch.equal(start[key], expected[key]), (name, key)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched


def test_attention_comes_from_its_own_stream():
    seed = 5
    pre = _start("simplecnn", seed, placement="pre")
    # the attention of `pre` is what building the network under the attention seed gives
    torch.manual_seed(seed + ATTENTION_STREAM)
    own_stream = create_model("simplecnn", num_classes=INFO.num_classes, placement="pre")
    attention = [k for k in pre if ".attention." in k]
    assert attention
    for key in attention:
        assert torch.equal(pre[key], own_stream.state_dict()[key]), key
    other = _start("simplecnn", seed + 1, placement="pre")
    assert not torch.equal(pre[attention[0]], other[attention[0]])
    # a different network built first does not move it: the plain layers come afterwards
    assert torch.equal(pre[attention[0]], _start("simplecnn", seed, placement="pre")[attention[0]])


def test_a_new_run_starts_from_the_paired_initialisation(tmp_path, monkeypatch):
    import preattn.train.loop as loop

    seen = []
    build = loop.build_model

    def spy(config, info, **options):
        model = build(config, info, **options)
        seen.append((options, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch.setattr(loop, "build_model", spy)
    config = TrainConfig(**TINY_CONFIG, epochs=1, seed=2, out=str(tmp_path / "r"))
    train(config)
    options, start = seen[0]
    assert options == {"initialise": True}
    info = DATASET_SPECS["synthetic"].info(TINY_CONFIG["image_size"])
    expected = build_model(config, info, initialise=True)
    for key, value in expected.state_dict().items():
        assert torch.equal(start[key], value), key
