import torch
from conceptspace import config, model
from conceptspace.interventions import applied, direction


def tiny_run(**overrides):
    return config.experiment("tiny", overrides).run


def test_forward_shapes_at_16_and_32_pixels():
    for res, channels in ((16, [16, 32, 32]), (32, [16, 32, 32])):
        run = tiny_run(**{"data.resolution": res, "model.channels": channels})
        net = model.build_model(run)
        x = torch.randn(4, 3, res, res)
        out = net(x, torch.tensor([0, 10, 500, 999]), torch.randn(4, 11))
        assert out.shape == x.shape


def test_strided_resampling_keeps_shapes_and_costs_less():
    """The original network's 2x2 resampling: same shapes, transposed convs up, fewer FLOPs than diffusers'."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for resampling in ("conv", "transpose"):
        run = tiny_run(**{"data.resolution": 32, "model.channels": [16, 32, 32], "model.resampling": resampling})
        net = model.build_model(run)
        x = torch.randn(2, 3, 32, 32)
        with FlopCounterMode(display=False) as counter:
            out = net(x, torch.tensor([3, 700]), torch.rand(2, 11))
        assert out.shape == x.shape
        flops[resampling] = counter.get_total_flops()
    ups = [m for b in net.unet.up_blocks for m in (b.upsamplers or [])]
    assert ups and all(isinstance(u.conv, torch.nn.ConvTranspose2d) and u.conv.kernel_size == (2, 2) for u in ups)
    assert flops["transpose"] < 0.9 * flops["conv"]


def test_conditioning_changes_the_output():
    run = tiny_run()
    net = model.build_model(run)
    for p in net.cond_embed.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([100, 100])
    a = net(x, t, torch.zeros(2, 11))
    b = net(x, t, torch.ones(2, 11))
    assert not torch.allclose(a, b)


def test_initialization_is_seeded():
    a = model.build_model(tiny_run())
    b = model.build_model(tiny_run())
    c = model.build_model(tiny_run(**{"train.seed": 1}))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_sampling_is_deterministic_given_noise_and_in_range():
    run = tiny_run()
    net = model.build_model(run).eval()
    noise = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.rand(3, 11)
    a = model.sample(net, run, cond, noise, steps=5)
    b = model.sample(net, run, cond, noise, steps=5)
    assert a.shape == (3, 3, 8, 8) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def conditioned_net():
    """A tiny model whose conditioning matters (random, not zero-initialized, embedding) and two inputs."""
    run = tiny_run()
    net = model.build_model(run).eval()
    for p in net.cond_embed.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return run, net, torch.randn(2, 3, 8, 8), torch.rand(2, 11)


def test_guidance_one_equals_plain_conditioning():
    """ε_u + 1·(ε_c − ε_u) = ε_c: guidance weight 1 is plain conditional sampling."""
    run, net, noise, cond = conditioned_net()
    plain = model.sample(net, run, cond, noise, steps=4)
    guided = model.sample(net, run, cond, noise, steps=4, guidance=1.0)
    strong = model.sample(net, run, cond, noise, steps=4, guidance=5.0)
    assert torch.allclose(plain, guided, atol=1e-5) and not torch.allclose(plain, strong, atol=1e-3)


def test_linear_intervention_edits_the_embedding_and_is_removed():
    run = tiny_run()
    net = model.build_model(run).eval()
    h = torch.rand(2, 11)
    before = net.cond_embed(h).detach()
    with applied(net, [("linear", "blue", 2.0, "large", 0.1), ()]):
        edited = net.cond_embed(h).detach()
    after = net.cond_embed(h).detach()
    assert torch.equal(before, after) and not torch.allclose(before[0], edited[0])
    assert torch.equal(edited[1], before[1])  # a row without an edit is left exactly as it was
    b = direction(net.cond_embed, "blue")
    # the component along the blue direction is amplified (by 1 + α before the small suppression)
    assert (edited[0] @ b).abs() > (before[0] @ b).abs()


def test_per_sample_guidance_equals_one_weight_at_a_time():
    run, net, noise, cond = conditioned_net()
    mixed = model.sample(net, run, cond, noise, steps=3, guidance=torch.tensor([0.0, 3.0]))
    one = model.sample(net, run, cond[:1], noise[:1], steps=3, guidance=0.0)
    three = model.sample(net, run, cond[1:], noise[1:], steps=3, guidance=3.0)
    assert torch.allclose(mixed, torch.cat([one, three]), atol=1e-5)
