"""A phenomenon on a small config: within a few hundred steps the model learns the color concept."""
import torch
from conceptspace import config, data, evaluate, model, probe, train
from conceptspace.store import Store


def test_a_small_model_learns_to_draw_the_prompted_color(tmp_path):
    ex = config.experiment("tiny", {"model.channels": [32, 64], "train.steps": 300, "train.checkpoints": 3,
                                    "train.first_checkpoint": 100, "data.samples_per_class": 512,
                                    "data.delta_color": 0.6})
    run = train.train(ex.run, Store(tmp_path), progress=False)
    net = model.build_model(ex.run).eval()
    d = ex.run.data
    first, last = run.checkpoint_steps()[0], run.checkpoint_steps()[-1]
    scores = {}
    for step in (first, last):
        net.load_state_dict(run.load_weights(step))
        right = []
        for cls in ((0, 0), (1, 0)):  # large red, large blue: both seen in training
            cond = data.class_prompt(d, cls).expand(32, -1)
            x = model.sample(net, ex.run, cond, evaluate.fixed_noise(32, d.resolution, 0), steps=20)
            right.append((probe.pixel_probe(x, d)[:, 0] == cls[0]).float().mean())
        scores[step] = torch.stack(right)
    assert (scores[last] >= 0.8).all(), scores
    assert scores[last].mean() > scores[first].mean()
