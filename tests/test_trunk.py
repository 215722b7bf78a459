import torch

from mmgan.trunk import GeneratorSet, LatentTrunk, TrunkConfig


def test_fresh_trunk_is_identity_and_keeps_any_length():
    trunk = LatentTrunk(TrunkConfig(width=16, depth=2), ["a", "b"])
    for length in (1, 16, 37):
        x = torch.randn(3, 16, length)
        assert torch.equal(trunk(x, "a"), x)


def test_trunk_is_shared_and_receives_gradients_from_every_modality():
    trunk = LatentTrunk(TrunkConfig(width=8, depth=1), ["a", "b"])
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
    for name, dim in (("a", 4), ("b", 2)):
        trunk.zero_grad()
        gens(name, torch.randn(2, dim)).square().sum().backward()
        assert trunk.blocks[0].up.weight.grad.abs().sum() > 0, name
        assert trunk.film[name].grad.abs().sum() > 0, name


def test_modality_state_dict_holds_only_that_modality():
    trunk = LatentTrunk(TrunkConfig(width=4, depth=1), ["a", "b"])
    gens = GeneratorSet(trunk, {"a": (torch.nn.Identity(), torch.nn.Linear(4, 4)),
                                "b": (torch.nn.Identity(), torch.nn.Linear(4, 4))})
    keys = set(gens.modality_state_dict("a"))
    assert "heads.a.weight" in keys and "trunk.film.a" in keys
    assert not any(k.startswith("heads.b") or k == "trunk.film.b" for k in keys)
    assert any(k.startswith("trunk.blocks.") for k in keys)
