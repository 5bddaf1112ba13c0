"""The paper recipe's formulation (vdm.py) against its closed forms, its network (paper_unet.py), its
data pipeline and its interventions."""
import math

import pytest
import torch
from conceptspace import config, data, model, train, vdm
from conceptspace.interventions import applied, direction


def paper_run(**overrides):
    return config.experiment("tiny", {"model.recipe": "paper", **overrides}).run


def test_each_bound_term_equals_its_closed_form():
    x = torch.tensor([[[[0.2]], [[0.5]], [[0.9]]]])  # one 1x1 RGB image: D = 3
    bpd = 1 / (3 * math.log(2))
    eps, eps_hat = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    assert vdm.diffusion_term(eps_hat, eps, torch.tensor(15.0)).item() == pytest.approx(bpd * 0.5 * 15 * 2.25)
    a2, s2 = 1 / (1 + math.exp(10)), 1 / (1 + math.exp(-10))  # γ₁ = 10
    kl = sum(0.5 * (s2 + a2 * v * v - math.log(s2) - 1) for v in (0.2, 0.5, 0.9))
    assert vdm.latent_term(x, torch.tensor(10.0)).item() == pytest.approx(bpd * kl, rel=1e-5)
    # z_0/α_0 − x = (σ_0/α_0) ε_0 and (σ_0/α_0)² = e^γ₀
    nll = 3 * (0.5 * math.log(2 * math.pi * 1e-6) + math.exp(-5) / (2 * 1e-6))
    recon = vdm.reconstruction_term(x, torch.tensor(-5.0), torch.ones(1, 3, 1, 1)).item()
    assert recon == pytest.approx(bpd * nll, rel=1e-5)
    assert vdm.MIN_BPD == pytest.approx(-8.64, abs=0.01)  # the original's reported floor


def test_schedule_starts_at_the_originals_range_and_both_parameters_learn():
    s = vdm.LinearSchedule()
    assert s(torch.tensor(0.0)).item() == -5 and s(torch.tensor(1.0)).item() == 10
    a, sig = vdm.alpha_sigma(torch.tensor([-5.0, 3.0]))
    assert torch.allclose(a ** 2 + sig ** 2, torch.ones(2))
    net = model.build_model(paper_run())
    x, h = torch.rand(4, 3, 8, 8), torch.rand(4, 11)
    vdm.loss(net, net.schedule, x, h, torch.Generator().manual_seed(0)).backward()
    assert net.schedule.b.grad.abs() > 0 and net.schedule.w.grad.abs() > 0


def test_antithetic_times_cover_the_unit_interval_evenly():
    t = vdm.antithetic_times(8, torch.Generator().manual_seed(3), "cpu")
    assert 0 <= t.min() < 1 / 8 and t.max() < 1
    assert torch.allclose(t.diff(), torch.full((7,), 1 / 8))


def test_one_ancestral_step_is_the_formula():
    z, eps_hat, noise = torch.tensor([0.3]), torch.tensor([-0.4]), torch.tensor([1.2])
    gt, gs = 2.0, -1.0
    at, st = math.sqrt(1 / (1 + math.exp(gt))), math.sqrt(1 / (1 + math.exp(-gt)))
    a_s, s_s = math.sqrt(1 / (1 + math.exp(gs))), math.sqrt(1 / (1 + math.exp(-gs)))
    c = 1 - math.exp(gs - gt)
    expected = (a_s / at) * (0.3 - c * st * -0.4) + s_s * math.sqrt(c) * 1.2
    got = vdm.ancestral_step(z, eps_hat, torch.tensor(gt), torch.tensor(gs), noise)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_network_predicts_the_noisy_input_at_initialisation_and_time_is_normalised():
    net = model.build_model(paper_run()).eval()
    z = torch.randn(2, 3, 8, 8)
    assert torch.equal(net(z, torch.tensor([0.1, 0.9]), torch.rand(2, 11)), z)  # zero-init conv_out + z_t
    assert vdm.network_time(torch.tensor(-5.0)) == 0 and vdm.network_time(torch.tensor(10.0)) == 1


def test_sampling_is_deterministic_given_the_noise_and_unclipped():
    run = paper_run()
    net = model.build_model(run).eval()
    for p in net.parameters():  # a network that does something, so the output depends on it
        torch.nn.init.normal_(p, std=0.05)
    noise, cond = torch.randn(3, 3, 8, 8), torch.rand(3, 11)
    a = model.sample(net, run, cond, noise, steps=5)
    assert torch.equal(a, model.sample(net, run, cond, noise, steps=5))
    assert torch.allclose(a[1:], model.sample(net, run, cond[1:], noise[1:], steps=5), atol=1e-6)  # batch-independent
    assert a.min() < 0 or a.max() > 1  # z_0 goes on as it is


def test_paper_split_and_epoch_batches():
    run = paper_run()
    ts = train.training_set(run, "cpu")
    n = 4 * run.data.samples_per_class - run.data.samples_per_class  # three training classes
    assert len(ts) == int(data.PAPER_TRAIN_FRACTION * n)
    per_epoch = -(-len(ts) // 7)
    batches = [ts.indices(step, 7, torch.Generator()) for step in range(per_epoch)]
    assert len(batches[-1]) == len(ts) - 7 * (per_epoch - 1)  # the last batch is partial
    assert sorted(torch.cat(batches).tolist()) == list(range(len(ts)))  # every image once per epoch
    assert not torch.equal(ts.indices(0, 7, torch.Generator()), ts.indices(per_epoch, 7, torch.Generator()))


def test_the_latent_edit_acts_on_every_blocks_own_projection():
    net = model.build_model(paper_run()).eval()
    projections = net.cond_projections()
    assert len(projections) == len(net.net.blocks()) and len(projections) > 1
    h = torch.rand(1, 11)
    before = [p(h).detach() for p in projections]
    with applied(net, [("linear", "blue", 2.0, "large", 0.1)]):
        edited = [p(h).detach() for p in projections]
    for p, e, e2 in zip(projections, before, edited):
        blue, large = direction(p, "blue"), direction(p, "large")
        e1 = e + 2.0 * (e @ blue) * blue
        assert torch.allclose(e2, e1 - 0.1 * (e1 @ large) * large, atol=1e-6)
    assert all(torch.equal(p(h), e) for p, e in zip(projections, before))  # hooks removed


def test_gpu_profile_builds_the_originals_network():
    """The original counts 10,913,861 parameters, 278,848 of them in two resampling convs its last
    levels build but never call (a 2x2 conv 256→256 and a transposed conv 64→64); every other one is
    here, plus the schedule's two. Its step costs 0.447 TFLOP per batch of 64."""
    from torch.utils.flop_counter import FlopCounterMode

    run = config.experiment("gpu").run
    assert run.model.recipe == "paper"
    net = model.build_model(run)
    assert sum(p.numel() for p in net.parameters()) == 10_913_861 - (256 * 256 * 4 + 256) - (64 * 64 * 4 + 64)
    assert len(net.net.blocks()) == 14
    x = torch.rand(1, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        vdm.loss(net, net.schedule, x, torch.rand(1, 11), torch.Generator().manual_seed(0)).backward()
    assert abs(counter.get_total_flops() * 64 / 1e12 / 0.447 - 1) < 0.05


def test_a_paper_recipe_step_runs_at_the_gpu_profile_on_cpu(tmp_path):
    """A CPU smoke step of the gpu profile's paper recipe: the bound is finite, and the output conv and
    the schedule learn (at initialisation ε̂ = z_t, so no gradient reaches the layers before conv_out)."""
    run = config.experiment("gpu").run
    s = train._new_state(run, torch.device("cpu"))
    ts = train.training_set(run.with_changes(**{"data.samples_per_class": 16}), "cpu")
    before = {k: v.detach().clone() for k, v in s.model.named_parameters()}
    loss = train._train_step(s, ts, train.loss_function(run), run.train, torch.device("cpu"))
    after = dict(s.model.named_parameters())
    assert torch.isfinite(loss) and loss > vdm.MIN_BPD
    for name in ("net.conv_out.weight", "schedule.b", "schedule.w"):
        assert not torch.equal(before[name], after[name]), name


def test_recipe_settings_are_validated_by_name():
    with pytest.raises(config.ConfigError, match="model.attention_last_level"):
        config.experiment("tiny", {"model.recipe": "paper", "model.attention_last_level": True})
    with pytest.raises(config.ConfigError, match="train.timesteps"):
        config.experiment("tiny", {"model.recipe": "paper", "train.timesteps": 500})
    with pytest.raises(config.ConfigError, match="model.recipe"):
        config.experiment("tiny", {"model.recipe": "vdm"})
    paper = paper_run()
    assert (paper.train.grad_clip, paper.train.ema_decay, paper.model.dropout) == (0.01, 0.0, 0.1)
    back = paper.with_changes(**{"model.recipe": "diffusers"})
    assert back.run_id() == config.experiment("tiny").run.run_id()  # stored runs keep their ids


@pytest.mark.parametrize("recipe", ["diffusers", "paper"])
@pytest.mark.parametrize("resampling", ["conv", "transpose"])
def test_every_model_saves_as_a_checkpoint(tmp_path, recipe, resampling):
    """safetensors refuses tensors that share memory: diffusers' Downsample2D aliases its conv unless named."""
    from conceptspace import store
    net = model.build_model(config.experiment("tiny", {"model.recipe": recipe, "model.resampling": resampling}).run)
    store.save_tensors(tmp_path / "w.safetensors", net.state_dict())
    assert store.load_tensors(tmp_path / "w.safetensors")[0].keys() == net.state_dict().keys()
