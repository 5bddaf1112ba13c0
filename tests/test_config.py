import pytest
from conceptspace.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    build,
    check_seeds,
    experiment,
    parse_setting,
    profile_names,
)


def test_profiles_load_and_validate():
    assert {"tiny", "cpu", "gpu"} <= set(profile_names())
    for name in profile_names():
        ex = experiment(name)
        assert ex.profile == name


def test_gpu_profile_is_the_papers_scale():
    run = experiment("gpu").run
    assert run.data.resolution == 32 and run.data.nuisance == 1.0
    assert run.model.recipe == "paper" and run.model.channels == (64, 128, 256) and run.model.attention
    assert run.model.resampling == "transpose"
    assert run.train.steps == 20000 and run.train.checkpoints == 60


def test_run_id_is_stable_and_sensitive():
    a = experiment("tiny").run
    assert a.run_id() == experiment("tiny").run.run_id()
    assert a.with_changes(**{"data.delta_color": 0.2}).run_id() != a.run_id()
    assert a.with_changes(**{"train.seed": 1}).run_id() != a.run_id()
    # a setting added later keeps stored runs' names at its default, and names a new run when changed
    assert a.with_changes(**{"train.bf16": True}).run_id() == a.run_id()
    assert a.with_changes(**{"train.bf16": False}).run_id() != a.run_id()


@pytest.mark.parametrize("overrides, needle", [
    ({"data.delta_color": 1.5}, "data.delta_color = 1.5 is out of range; allowed: 0 < data.delta_color ≤ 1"),
    ({"data.delta_color": -0.1}, "data.delta_color"),
    ({"data.delta_size": 0}, "data.delta_size = 0 is out of range"),
    ({"data.delta_colour": 0.2}, "unknown setting data.delta_colour"),
    ({"data.resolution": 12}, "data.resolution = 12 is out of range; allowed: one of [8, 16, 32, 64]"),
    ({"train.steps": 0}, "train.steps = 0 is out of range"),
    ({"train.steps": 2.5}, "train.steps = 2.5 must be a whole number"),
    ({"train.steps": "many"}, "train.steps = 'many' must be a number"),
    ({"model.attention": "yes"}, "model.attention = 'yes' must be true or false"),
    ({"data.held_out": [[1, 2]]}, "data.held_out has [1, 2]"),
    ({"data.held_out": [[1]]}, "data.held_out has [1]"),
    ({"data.held_out": [[0, 1], [1, 1]]}, "leaves only one value of 'size'"),
    ({"data.concepts": ["color", "shape"]}, "data.concepts has 'shape'"),
    ({"model.norm_groups": 3}, "model.norm_groups = 3 must divide every channel count"),
    ({"train.first_checkpoint": 10_000}, "train.first_checkpoint = 10000 is after the last step"),
    ({"data": 3}, "data = 3 must be a mapping"),
    ({"eval.samples_held_out": 0}, "eval.samples_held_out = 0 is out of range"),
    ({"probe.delta_color_range": [0.5, 0.2]}, "probe.delta_color_range = [0.5, 0.2]"),
])
def test_bad_settings_are_refused_by_name(overrides, needle):
    with pytest.raises(ConfigError) as err:
        experiment("tiny", overrides)
    assert needle in str(err.value)


def test_a_set_value_reads_as_typed_including_exponents_yaml_reads_as_text():
    assert parse_setting("2e-3") == 0.002 and parse_setting("0.2") == 0.2 and parse_setting("3") == 3
    assert parse_setting("true") is True and parse_setting("[16, 32]") == [16, 32]
    assert parse_setting("conv") == "conv"
    assert experiment("tiny", {"train.learning_rate": parse_setting("2e-3")}).run.train.learning_rate == 0.002
    with pytest.raises(ConfigError, match="train.steps = 'many' must be a number"):
        experiment("tiny", {"train.steps": parse_setting("many")})


def test_unknown_profile_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"profile = 'laptop' is unknown; allowed: \['cpu', 'gpu', 'tiny'\]"):
        experiment("laptop")


def test_resolution_must_pass_through_the_unet():
    with pytest.raises(ConfigError, match="cannot pass through 4 UNet levels"):
        experiment("tiny", {"model.channels": [8, 8, 8, 8], "data.resolution": 8})


def test_lists_become_tuples_and_defaults_are_the_paper():
    d = build(DataConfig, {"held_out": [[1, 1]]})
    assert d.held_out == ((1, 1),)
    paper = build(RunConfig, {})
    assert paper.data.nuisance == 1.0 and paper.train.learning_rate == 1e-3 and paper.train.weight_decay == 0.01


def test_a_list_whose_default_is_empty_may_be_emptied_and_others_may_not():
    assert experiment("gpu").capability.long_delta_color == ()  # the paper's runs all have one length
    assert experiment("tiny", {"capability.long_delta_color": []}).capability.long_delta_color == ()
    assert experiment("tiny", {"capability.long_delta_color": [0.25, 0.3]}).capability.long_delta_color == (0.25, 0.3)
    with pytest.raises(ConfigError, match="capability.seeds = \\[\\] must be a non-empty list"):
        experiment("tiny", {"capability.seeds": []})


@pytest.mark.parametrize("seeds", [[], [0, -1], [0, 1.5], "012", 3, [True], None])
def test_a_chapters_seeds_are_refused_by_name_unless_whole_numbers(seeds):
    with pytest.raises(ConfigError, match=r"^seeds = .*allowed: a non-empty list of whole numbers ≥ 0"):
        check_seeds(seeds)
    assert check_seeds([0, 3]) == (0, 3)
