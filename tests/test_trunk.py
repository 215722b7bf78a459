import pytest
import torch

from mmgan.trunk import GeneratorSet, LatentTrunk, TrunkConfig


def test_fresh_trunk_is_identity_and_keeps_any_length():
    trunk = LatentTrunk(TrunkConfig(width=16, depth=2), ["a", "b"])
    for length in (1, 16, 37):
        x = torch.randn(3, 16, length)
        assert torch.equal(trunk(x, "a"), x)


@pytest.mark.parametrize("residual", ["plain", "bounded"])
def test_trunk_is_shared_and_receives_gradients_from_every_modality(residual):
    trunk = LatentTrunk(TrunkConfig(width=8, depth=1, residual=residual), ["a", "b"])
    parts = {
        "a": (torch.nn.Linear(4, 8 * 3).requires_grad_(True), torch.nn.Flatten()),
        "b": (torch.nn.Linear(2, 8 * 5), torch.nn.Flatten()),
    }
    parts = {k: (torch.nn.Sequential(stem, torch.nn.Unflatten(1, (8, -1))), head) for k, (stem, head) in parts.items()}
    gens = GeneratorSet(trunk, parts)
    # the trunk's parameters exist once
    assert sum(p.numel() for p in gens.parameters()) == sum(
        p.numel() for m in (trunk, gens.stems, gens.heads) for p in m.parameters())
    torch.nn.init.normal_(trunk.blocks[0].down.weight)  # leave the identity start so gradients reach up/mix
    for gate in trunk.gate.values():
        torch.nn.init.constant_(gate, 0.5)
    for name, dim in (("a", 4), ("b", 2)):
        trunk.zero_grad()
        gens(name, torch.randn(2, dim)).square().sum().backward()
        assert trunk.blocks[0].up.weight.grad.abs().sum() > 0, name
        assert trunk.film[name].grad.abs().sum() > 0, name
        if residual == "bounded":
            assert trunk.gate[name].grad.abs().sum() > 0, name


def test_modality_state_dict_holds_only_that_modality():
    trunk = LatentTrunk(TrunkConfig(width=4, depth=1), ["a", "b"])  # bounded: a gate per modality
    gens = GeneratorSet(trunk, {"a": (torch.nn.Identity(), torch.nn.Linear(4, 4)),
                                "b": (torch.nn.Identity(), torch.nn.Linear(4, 4))})
    keys = set(gens.modality_state_dict("a"))
    assert "heads.a.weight" in keys and "trunk.film.a" in keys and "trunk.gate.a" in keys
    assert not any(k.startswith("heads.b") or k in ("trunk.film.b", "trunk.gate.b") for k in keys)
    assert any(k.startswith("trunk.blocks.") for k in keys)


def test_modality_state_dict_copies_only_what_safetensors_needs_copied(tmp_path):
    """The export's state holds the weights themselves (a copy of a large generator doubled the export's memory),
    and a copy where two names share a storage, which safetensors refuses to write."""
    from safetensors.torch import load_file, save_file

    head = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    head[1].weight = head[0].weight  # tied
    gens = GeneratorSet(LatentTrunk(TrunkConfig(width=4, depth=1), ["a"]), {"a": (torch.nn.Identity(), head)})
    state = gens.modality_state_dict("a")
    block = next(k for k in state if k.startswith("trunk.blocks."))
    assert state[block].data_ptr() == gens.state_dict()[block].data_ptr()  # not a copy
    save_file(state, str(tmp_path / "a.safetensors"))
    back = load_file(str(tmp_path / "a.safetensors"))
    assert torch.equal(back["heads.a.0.weight"], back["heads.a.1.weight"])


def test_a_modality_goes_through_the_first_trunk_depth_blocks_only():
    trunk = LatentTrunk(TrunkConfig(width=8, depth=3, residual="plain"), ["a", "b"])
    for block in trunk.blocks:
        torch.nn.init.normal_(block.down.weight)  # every block changes its input
    ident = (torch.nn.Identity(), torch.nn.Identity())
    gens = GeneratorSet(trunk, {"a": ident, "b": ident}, {"a": 1, "b": -1})
    x = torch.randn(2, 8, 5)
    assert torch.allclose(gens("a", x), trunk.blocks[0](x, trunk.film["a"][0]))
    assert torch.allclose(gens("b", x), trunk(x, "b"))
    assert gens.unused_trunk_blocks() == []
    assert GeneratorSet(trunk, {"a": ident}, {"a": 1}).unused_trunk_blocks() == [1, 2]


def test_blocks_no_modality_uses_stay_frozen_and_still_export(tiny_config, tmp_path):
    from mmgan import checkpoint
    from mmgan.engine import Trainer
    from mmgan.evaluation.inference import load_generator

    run = tmp_path / "run"
    trainer = Trainer(tiny_config(run, steps=3, extra=("trunk.depth=2", "image.trunk_depth=1")), progress=False)
    live = trainer.accelerator.unwrap_model(trainer.G)
    unused_before = {k: v.clone() for k, v in live.trunk.blocks[1].state_dict().items()}
    used_before = live.trunk.blocks[0].up.weight.clone()
    trainer.fit()
    assert all(torch.equal(v, live.trunk.blocks[1].state_dict()[k]) for k, v in unused_before.items())
    assert not torch.equal(used_before, live.trunk.blocks[0].up.weight)
    # the export holds both blocks and loads as the network that was trained: one block for image
    state, meta = checkpoint.read_export(run, "image")
    assert "trunk.blocks.1.up.weight" in state and meta["config"]["trunk_depth"] == 1
    generator, config = load_generator(run, "image")
    assert config.trunk_depth == 1 and generator.depths == {"image": 1}


def test_trunk_lr_scale_sets_the_trunks_own_learning_rate(tiny_config, tmp_path):
    from mmgan.engine import Trainer

    trainer = Trainer(tiny_config(tmp_path / "run", steps=2, extra=("trunk.lr_scale=0",)), progress=False)
    trunk = trainer.accelerator.unwrap_model(trainer.G).trunk
    before = trunk.blocks[0].up.weight.clone()
    stem_before = trainer.accelerator.unwrap_model(trainer.G).stems["image"].net[0].weight.clone()
    assert [g["lr"] for g in trainer.opt_g.param_groups] == [2e-4, 0.0]
    trainer.fit()
    assert torch.equal(before, trunk.blocks[0].up.weight)  # lr 0: the trunk stays where it was
    assert not torch.equal(stem_before, trainer.accelerator.unwrap_model(trainer.G).stems["image"].net[0].weight)


def test_a_bounded_block_starts_as_the_identity_and_never_outweighs_its_input_more_than_its_gate():
    trunk = LatentTrunk(TrunkConfig(width=16, depth=2, residual="bounded"), ["a"])
    x = torch.randn(3, 16, 5) * 4
    assert torch.equal(trunk(x, "a"), x)  # gates at 0
    with torch.no_grad():
        trunk.gate["a"].fill_(0.25)
        for block in trunk.blocks:
            block.down.weight.mul_(1000)  # whatever the branch's weights grow to
        y = trunk.blocks[0](x, trunk.film["a"][0], trunk.gate["a"][0])
    change = (y - x).norm(dim=1)
    assert torch.all(change <= 0.25 * x.norm(dim=1) * 1.001)
    assert torch.all(change >= 0.25 * x.norm(dim=1) * 0.999)


def test_a_run_from_before_residual_and_trunk_depth_existed_resumes_as_it_was(tiny_config, tmp_path):
    from mmgan import config as cfg
    from mmgan.contract.manager import get_modality
    from mmgan.engine import Trainer
    from mmgan.evaluation.inference import load_generator

    run = tmp_path / "old"
    Trainer(tiny_config(run, steps=2, extra=("trunk.residual=plain", "image.trunk_depth=-1")), progress=False).fit()
    # what config.toml and the export looked like before those keys existed
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace('residual = "plain"\n', "").replace("trunk_depth = -1\n", ""))
    for name in ("image.json",):
        meta = (run / "export" / name).read_text()
        (run / "export" / name).write_text(meta.replace('"residual": "plain",', "").replace('"trunk_depth": -1,', ""))
    config = cfg.resolve(get_modality, resume_dir=run, steps=3)
    assert config.trunk.residual == "plain" and config.modalities["image"].trunk_depth == -1
    Trainer(config, resume=True, progress=False).fit()  # the checkpoint's weights fit the network
    generator, image_config = load_generator(run, "image", last=True)
    assert generator.trunk.config.residual == "plain" and image_config.trunk_depth == -1
