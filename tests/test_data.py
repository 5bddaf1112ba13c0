import pytest
import torch
from conceptspace import data
from conceptspace.config import DATASET_RULES, DataConfig, build


def cfg(**kw):
    return build(DataConfig, kw)


@pytest.mark.parametrize("dc, ds", [(0.2, 0.4), (0.8, 0.3), (0.1, 0.2)])
def test_class_means_follow_the_spec(dc, ds):
    d = cfg(delta_color=dc, delta_size=ds)
    g = torch.Generator().manual_seed(0)
    a = data.attributes(d, torch.tensor([[0, 0], [1, 1]]), g, jitter=False)
    h, hs = dc / 2, ds / 2
    assert torch.allclose(a["color"][0], torch.tensor([0.5 + h, 0.5 - h, 0.5 - h]))  # red
    assert torch.allclose(a["color"][1], torch.tensor([0.5 - h, 0.5 - h, 0.5 + h]))  # blue
    assert torch.allclose(a["radius"], torch.tensor([0.45 + hs, 0.45 - hs]))        # large, small
    assert torch.allclose(a["background"], torch.full((2, 3), 0.9))


def test_jitter_ranges_follow_the_spec():
    d = cfg(delta_color=0.4, delta_size=0.4)
    g = torch.Generator().manual_seed(1)
    n = 4000
    a = data.attributes(d, torch.tensor([[1, 1]] * n), g)
    blue = torch.tensor([0.3, 0.3, 0.7])
    dev = (a["color"] - blue).abs()
    assert dev.max() <= 0.4 / 8 + 1e-6 and dev.max() > 0.9 * 0.4 / 8
    # small radius 0.25 ± 0.15, floored at 0.1
    assert a["radius"].min() >= 0.1 and a["radius"].max() <= 0.4 + 1e-6
    assert a["background"].min() >= 0.8 - 1e-6 and a["background"].max() <= 1.0 + 1e-6
    assert a["position"].abs().max() <= 0.5


def test_nuisance_scales_position_and_background():
    d = cfg(nuisance=0.0)
    a = data.attributes(d, torch.tensor([[0, 1]] * 100), torch.Generator().manual_seed(0))
    assert a["position"].abs().max() == 0 and torch.allclose(a["background"], torch.full((100, 3), 0.9))


def test_held_out_class_never_in_training_data():
    d = cfg(resolution=8, samples_per_class=50)
    images, cond, labels = data.make_dataset(d, seed=0)
    assert (1, 1) not in {tuple(x) for x in labels.tolist()}
    assert labels.shape == (150, 2) and images.shape == (150, 3, 8, 8) and cond.shape == (150, 11)
    # the conditioning of the blue images is blue, of the small ones small
    blue = labels[:, 0] == 1
    assert (cond[blue, 6] > cond[blue, 4]).all() and (cond[~blue, 4] > cond[~blue, 6]).all()


def test_conditioning_holds_each_images_own_values():
    d = cfg()
    g = torch.Generator().manual_seed(3)
    a = data.attributes(d, torch.tensor([[0, 1], [1, 0]]), g)
    h = data.conditioning(d, a)
    assert torch.equal(h[:, 4:7], a["color"]) and torch.equal(h[:, 7], a["radius"])
    assert (h[:, :4] == 0).all() and (h[:, 8:] == 0).all()  # unused slots, background not a concept
    assert data.class_prompt(d, (1, 1)).tolist() == pytest.approx([0, 0, 0, 0, 0.3, 0.3, 0.7, 0.25, 0, 0, 0])


def test_background_concept_fills_its_slots():
    d = cfg(concepts=["color", "size", "background"], held_out=[[1, 1, 1]], delta_background=0.6)
    h = data.class_prompt(d, (0, 0, 1))
    assert h[8:11].tolist() == pytest.approx([0.2, 0.2, 0.2])  # dark grey = 0.5 - 0.6 / 2


@pytest.mark.parametrize("resolution", [16, 32])
def test_images_are_deterministic_and_in_range(resolution):
    d = cfg(resolution=resolution, samples_per_class=10)
    a, ca, _ = data.make_dataset(d, seed=5)
    b, cb, _ = data.make_dataset(d, seed=5)
    c, _, _ = data.make_dataset(d, seed=6)
    assert a.shape == (30, 3, resolution, resolution)
    assert torch.equal(a, b) and torch.equal(ca, cb) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_rendered_disc_has_the_right_color_and_size():
    d = cfg(nuisance=0.0, resolution=32, delta_color=0.8)
    g = torch.Generator().manual_seed(0)
    img = data.render(data.attributes(d, torch.tensor([[1, 0], [1, 1]]), g, jitter=False), 32, g)
    assert img[0, :, 16, 16].tolist() == pytest.approx([0.1, 0.1, 0.9], abs=0.01)   # blue centre
    assert img[0, :, 0, 0].tolist() == pytest.approx([0.9, 0.9, 0.9], abs=0.01)     # background corner
    def fg(x):
        return ((x - 0.9).abs().amax(dim=0) > 0.1).float().mean()
    assert fg(img[0]) > 2 * fg(img[1])  # large covers more than twice the small disc's area


@pytest.mark.parametrize("dc, ds, color_mse, size_mse", [
    (0.1, 0.2, 0.0013, 0.0152), (0.4, 0.4, 0.0296, 0.0554), (0.8, 0.4, 0.1185, 0.0932), (0.2, 0.3, 0.0063, 0.0300)])
def test_concept_signal_matches_the_papers_pixel_mse(dc, ds, color_mse, size_mse):
    """The official calc_mse_pix.py values (book/references.md: concept-signal): class-mean images at 32x32, 128
    samples, seed 42."""
    d = cfg(delta_color=dc, delta_size=ds)
    assert data.concept_signal(d, "color") == pytest.approx(color_mse, rel=0.05)
    assert data.concept_signal(d, "size") == pytest.approx(size_mse, rel=0.05)


def test_concept_signal_grows_with_delta():
    values = [data.concept_signal(cfg(delta_color=dc), "color") for dc in (0.2, 0.4, 0.6)]
    assert values == sorted(values)


def test_every_dataset_the_config_allows_makes_images():
    assert set(data.DATASETS) == set(DATASET_RULES)
