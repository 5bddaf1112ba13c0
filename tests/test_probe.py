"""The oracle probe of the cpu profile: accurate on real images of every class, the held-out one included."""
import pytest
import torch
from conceptspace import config, data, evaluate, probe
from conceptspace.store import Store


@pytest.fixture(scope="module")
def cpu_probe(session_store):
    ex = config.experiment("cpu")
    return ex, evaluate.load_probe(Store(), ex.run.data, ex.probe)


@pytest.mark.parametrize("dc, ds", [(0.2, 0.4), (0.6, 0.4), (0.4, 0.3)])
def test_probe_reads_real_images_of_every_class(cpu_probe, dc, ds):
    ex, model = cpu_probe
    d = ex.run.data.__class__(**{**config.to_dict(ex.run.data), "delta_color": dc, "delta_size": ds,
                                 "held_out": ((1, 1),), "concepts": ("color", "size")})
    for jitter in (True, False):
        acc = probe.probe_accuracy(model, d, n_per_class=128, jitter=jitter)
        assert min(acc.values()) >= 0.99, acc


def test_probe_reads_the_papers_full_nuisance_and_over_prompt_colors(cpu_probe):
    ex, model = cpu_probe
    d = config.build(config.DataConfig, {"resolution": ex.run.data.resolution, "nuisance": 1.0, "delta_color": 0.9})
    assert min(probe.probe_accuracy(model, d, n_per_class=128).values()) >= 0.99


def test_probe_agrees_with_the_rule_based_reader(cpu_probe):
    ex, model = cpu_probe
    d = config.build(config.DataConfig, {"resolution": ex.run.data.resolution, "nuisance": 0.0,
                                         "delta_color": 0.5})
    g = torch.Generator().manual_seed(7)
    classes = torch.tensor(data.all_classes(d)).repeat_interleave(64, dim=0)
    images = data.render(data.attributes(d, classes, g), d.resolution, g)
    rule = probe.pixel_probe(images, d)
    assert torch.equal(rule, classes.float())  # the rule reads clean images exactly
    cnn = (model.probabilities(images) > 0.5).float()
    assert (cnn == rule).float().mean() >= 0.99


def test_probe_is_cached_in_the_store(cpu_probe):
    ex, model = cpu_probe
    again = evaluate.load_probe(Store(), ex.run.data, ex.probe)
    assert again.key == model.key
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
