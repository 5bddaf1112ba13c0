"""Chapter 7: prompts that leave a concept out. The masking in the training set (its rate, which slots
and classes it touches, images untouched, seeded, validated, old run ids kept) and the chapter's rules on
hand-made concept-space tables, each on a table where it holds and on tables where it must fail."""
import numpy as np
import pandas as pd
import pytest
import torch
from conceptspace import concept_signal, config, data, dynamics, model, prompting, underspecification
from conceptspace.config import ConfigError, DataConfig, build

NEVER = dynamics.NEVER
COLOR, SIZE = data.COND_SLOTS["color"], data.COND_SLOTS["size"]


def cfg(**kw):
    return build(DataConfig, {"resolution": 8, "samples_per_class": 600, **kw})


# ---- masking in the data pipeline -------------------------------------------------------------------------

def test_the_masked_fraction_matches_p_and_only_the_masked_concept_is_nulled():
    images, cond, labels = data.make_dataset(cfg(samples_per_class=3000, mask=[0.3, 0.0]), seed=0)
    nulled = (cond[:, COLOR] == data.NULL_VALUE).all(1)
    assert abs(nulled.float().mean().item() - 0.3) < 0.02  # 9,000 Bernoulli draws: sd 0.005
    for cls in data.training_classes(cfg()):  # every training class masked at the same rate
        of = (labels == torch.tensor(cls)).all(1)
        assert abs(nulled[of].float().mean().item() - 0.3) < 0.04
    assert (cond[:, SIZE] > 0).all()  # size is never left out
    assert not (cond[~nulled][:, COLOR] == data.NULL_VALUE).any()  # a prompt's slots are nulled all or none


def test_only_the_masked_class_loses_its_color_and_images_do_not_change():
    plain = data.make_dataset(cfg(), seed=4)
    masked = data.make_dataset(cfg(mask=[0.5, 0.0], mask_classes=[[0, 1]]), seed=4)
    assert torch.equal(plain[0], masked[0]) and torch.equal(plain[2], masked[2])  # images and labels as unmasked
    changed = (plain[1] != masked[1]).any(1)
    small_red = (masked[2] == torch.tensor([0, 1])).all(1)
    assert (~changed[~small_red]).all()  # other classes' prompts untouched
    assert 0.4 < changed[small_red].float().mean().item() < 0.6
    assert (masked[1][changed][:, COLOR] == data.NULL_VALUE).all()
    keep = [i for i in range(data.COND_DIM) if i not in range(COLOR.start, COLOR.stop)]
    assert torch.equal(masked[1][:, keep], plain[1][:, keep])  # radius and unused slots as they were


def test_p_one_masks_every_prompt_of_the_class_and_zeros_mask_nothing():
    _, cond, labels = data.make_dataset(cfg(mask=[1.0, 0.0], mask_classes=[[0, 1]]), seed=1)
    small_red = (labels == torch.tensor([0, 1])).all(1)
    assert (cond[small_red][:, COLOR] == data.NULL_VALUE).all()
    assert not (cond[~small_red][:, COLOR] == data.NULL_VALUE).any()
    zeros = cfg(mask=[0, 0], mask_classes=[[0, 1]])
    assert zeros.mask == () and zeros.mask_classes == ()
    assert torch.equal(data.make_dataset(zeros, seed=1)[1], data.make_dataset(cfg(), seed=1)[1])


def test_the_mask_is_drawn_from_the_runs_seed():
    d = cfg(mask=[0.5, 0.5])
    a, b, c = ((data.make_dataset(d, seed=s)[1] == data.NULL_VALUE).any(1) for s in (7, 7, 8))  # which are masked
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_old_run_ids_are_kept_and_a_mask_names_its_own_run():
    ex = config.experiment("tiny")
    assert "mask" not in config._identity(ex.run.data) and "mask_classes" not in config._identity(ex.run.data)
    plain = ex.run.run_id("fp32")
    assert ex.run.with_changes(**{"data.mask": [0, 0]}).run_id("fp32") == plain
    assert ex.run.with_changes(**{"data.mask": [0.5, 0]}).run_id("fp32") != plain
    assert data.NULL_VALUE == model.NULL_CONDITIONING  # the masked slots take guidance's null token


@pytest.mark.parametrize("settings, message", [
    ({"mask": [1.5, 0]}, "data.mask[0] = 1.5 is out of range; allowed: 0 ≤ data.mask[0] ≤ 1"),
    ({"mask": [-0.1, 0]}, "data.mask[0] = -0.1 is out of range; allowed: 0 ≤ data.mask[0] ≤ 1"),
    ({"mask": [0.5]}, "data.mask = [0.5] has 1 values; allowed: one probability 0 ≤ p ≤ 1 per concept"),
    ({"mask": 0.5}, "data.mask = 0.5 must be a list like [0.0]"),
    ({"mask": [0.5, 0], "mask_classes": [[1, 1]]}, "data.mask_classes has [1, 1], not a training class"),
    ({"mask_classes": [[0, 1]]}, "data.mask_classes = [[0, 1]] without data.mask"),
])
def test_bad_masks_are_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg(**settings)


def test_bad_chapter_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="underspec.fractions = .* include 0 .* and 1"):
        config.experiment("tiny", {"underspec.fractions": [0.5, 1]})
    with pytest.raises(ConfigError, match="underspec.fractions\\[1\\] = 2 is out of range"):
        config.experiment("tiny", {"underspec.fractions": [0, 2]})
    with pytest.raises(ConfigError, match="underspec.concept = 'shape' is unknown"):
        config.experiment("tiny", {"underspec.concept": "shape"})


def test_the_underspecified_prompt_leaves_only_its_concept_out():
    d = cfg()
    p = prompting.underspecified_prompt(d, (0, 1), "color", 4)
    naive = data.class_prompt(d, (0, 1))
    assert p.target == (0, 1) and p.method == "underspecified" and p.name == "small, color left out"
    assert all(v == data.NULL_VALUE for v in p.cond[COLOR]) and p.cond[SIZE] == tuple(naive[SIZE].tolist())


# ---- the chapter's runs ---------------------------------------------------------------------------------

def test_the_runs_are_the_grid_of_fractions_and_seeds_around_the_profiles_run(tiny):
    ex = config.experiment("tiny", {"underspec.seeds": [0, 1]})
    runs = underspecification.underspec_configs(ex)
    assert len(runs) == len(ex.underspec.fractions) * 2
    assert runs[0].run_id() == ex.run.run_id()  # p = 0, seed 0: chapter 1's run, not trained again
    got = [(underspecification.fraction_of(r, "color"), r.train.seed) for r in runs]
    assert got == [(p, s) for p in ex.underspec.fractions for s in (0, 1)]
    assert all(r.data.mask_classes == ((0, 1),) for r in runs if r.data.mask)  # small-red only
    assert underspecification.masked_class(ex.run.data, "size") == (1, 0)  # large-blue for size
    asked = {underspecification.fraction_of(r, "color"): len(underspecification.chapter_prompts(r, ex)) for r in runs}
    assert asked[0.5] == 1 and asked[0.0] == asked[1.0] > 1  # interventions at p = 0 and 1 only


# ---- the rules, on hand-made tables ----------------------------------------------------------------------

STEPS = list(range(100, 2100, 100))  # 20 checkpoints


def table(learned: dict, final: dict | None = None) -> pd.DataFrame:
    """learned: {(p, seed): step where the held-out joint accuracy jumps to 1 (NEVER: never)};
    final: {(p, seed): (P(blue), P(small)) of the held-out prompt at every checkpoint}."""
    rows = []
    for (p, seed), t in learned.items():
        pc, ps = (final or {}).get((p, seed), (0.9, 0.9))
        for s in STEPS:
            rows.append({"run": f"p{p}-s{seed}", "fraction": p, "seed": seed, "step": s, "prompt": "small-blue",
                         "method": "naive", "p_color": pc, "p_size": ps, "joint": float(s >= t)})
    return pd.DataFrame(rows)


def delays(learned):
    return underspecification.delay_rule(underspecification.steps_to_learn(table(learned), "small-blue"))


def test_the_delay_rule_holds_where_masking_delays_learning():
    rule = delays({(0.0, 0): 400, (0.0, 1): 500, (0.5, 0): 900, (0.5, 1): 800, (1.0, 0): NEVER, (1.0, 1): 1500})
    assert rule["holds"] and rule["rho"] == pytest.approx(1.0) and rule["last"] > rule["first"]
    assert rule["per_seed"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}


def test_the_delay_rule_fails_without_a_delay_or_with_an_unlearned_control():
    flat = delays({(0.0, 0): 500, (0.5, 0): 500, (1.0, 0): 500})
    assert not flat["holds"] and np.isnan(flat["rho"])
    faster = delays({(0.0, 0): 900, (0.5, 0): 700, (1.0, 0): 400})
    assert not faster["holds"] and faster["rho"] == pytest.approx(-1.0)
    never = delays({(0.0, 0): NEVER, (0.5, 0): NEVER, (1.0, 0): NEVER})  # nothing learned: no delay to see
    assert not never["holds"]
    one_swap = delays({(0.0, 0): 400, (0.25, 0): 900, (0.5, 0): 700, (0.75, 0): 1200, (1.0, 0): 1500})
    assert one_swap["holds"] and one_swap["rho"] == pytest.approx(0.9)
    two_swaps = delays({(0.0, 0): 900, (0.25, 0): 400, (0.5, 0): 1200, (0.75, 0): 700, (1.0, 0): 1500})
    assert not two_swaps["holds"] and two_swaps["rho"] == pytest.approx(0.5)


def test_the_control_rule_needs_every_unmasked_seed_to_learn():
    ok = underspecification.steps_to_learn(table({(0.0, 0): 400, (0.0, 1): 600, (1.0, 0): NEVER}), "small-blue")
    rule = underspecification.control_rule(ok)
    assert rule["holds"] and rule["learned"] == 2 == rule["seeds"] and set(rule["values"]) == {"seed 0", "seed 1"}
    late = underspecification.steps_to_learn(table({(0.0, 0): 400, (0.0, 1): NEVER}), "small-blue")
    assert not underspecification.control_rule(late)["holds"]
    masked_only = underspecification.steps_to_learn(table({(1.0, 0): 400}), "small-blue")
    assert not underspecification.control_rule(masked_only)["holds"]  # no control at all


def test_the_delay_table_counts_censored_seeds_at_their_last_step():
    times = underspecification.steps_to_learn(table({(1.0, 0): NEVER, (1.0, 1): 1000, (1.0, 2): 600}), "small-blue")
    learned = times.set_index("seed").step  # the smoothed crossing: a checkpoint or two after the jump
    assert learned[1] in (1100, 1200, 1300) and learned[2] < learned[1] and learned[0] == NEVER
    row = underspecification.delay_table(times).iloc[0]
    assert row.censored == 1 and row["median"] == learned[1]
    assert row["mean"] == pytest.approx((2000 + learned[1] + learned[2]) / 3) and row.lo < row["mean"] < row.hi


def outcome(final):
    t = table({k: NEVER for k in final}, final)
    return underspecification.final_points(t, "small-blue", ("color", "size"))


def test_the_correlated_value_rule_holds_where_the_held_out_prompt_gives_the_masked_class():
    points = outcome({(0.0, 0): (0.95, 0.9), (1.0, 0): (0.1, 0.9), (1.0, 1): (0.3, 0.8)})
    rule = underspecification.correlated_rule(points, cfg(), "color")
    assert rule["holds"] and rule["values"] == {"seed 0": "small-red", "seed 1": "small-red"}
    assert rule["target"] == "small-red"
    assert underspecification.yielded_value(points, cfg(), "color") == {
        "p 0 seed 0": "blue", "p 1 seed 0": "red", "p 1 seed 1": "red"}


def test_the_correlated_value_rule_fails_where_the_model_composes_or_collapses_elsewhere():
    composes = outcome({(1.0, 0): (0.1, 0.9), (1.0, 1): (0.8, 0.9)})  # one seed generates small-blue
    assert not underspecification.correlated_rule(composes, cfg(), "color")["holds"]
    large = outcome({(1.0, 0): (0.1, 0.2)})  # red, but large: not the masked class
    assert not underspecification.correlated_rule(large, cfg(), "color")["holds"]
    no_full = outcome({(0.5, 0): (0.1, 0.9)})  # no run at p = 1: nothing to judge
    assert not underspecification.correlated_rule(no_full, cfg(), "color")["holds"]


def test_the_intervention_table_gives_final_capability_and_emerged_seeds():
    rows = []
    for seed, late in ((0, 0.9), (1, 0.1)):
        for s in STEPS:
            rows.append({"run": f"r{seed}", "fraction": 1.0, "seed": seed, "step": s, "method": "over-prompt",
                         "capability": late if s > 1000 else 0.0})
    t = underspecification.intervention_table(pd.DataFrame(rows))
    assert t["final capability"].iloc[0] == pytest.approx(0.5) and t["seeds emerged"].iloc[0] == 0.5


def test_spearman_ranks_never_last_and_is_undefined_on_constants():
    assert concept_signal.spearman([0, 0.5, 1], [100, 200, NEVER]) == pytest.approx(1.0)
    assert concept_signal.spearman([0, 0.5, 1], [100, NEVER, NEVER]) == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(concept_signal.spearman([0, 0.5, 1], [NEVER] * 3))
