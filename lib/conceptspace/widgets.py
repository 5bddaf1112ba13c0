"""ipywidgets explorers for a live kernel: scrub through checkpoints, regenerate samples.

In the rendered book the widgets show their executed state but run no Python; each chapter pairs
them with an altair view of the same data that works without a kernel. Used by: chapters 3 and 4.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as widgets
import pandas as pd
from IPython.display import display

from .charts import image_grid


def checkpoint_scrubber(cs: pd.DataFrame, images: Callable[[int, str], object], prompts: list[str],
                        concepts=("color", "size"), scale: int = 3) -> widgets.Widget:
    """A slider over checkpoints showing each prompt's samples and its point in concept space.

    `images(step, prompt)` returns that prompt's kept samples at that checkpoint (N×3×R×R).
    """
    steps = sorted(cs["step"].unique())
    slider = widgets.SelectionSlider(options=steps, value=steps[-1], description="step",
                                     continuous_update=False, layout=widgets.Layout(width="60%"))
    out = widgets.Output()

    def show(_=None):
        step = slider.value
        now = cs[cs["step"] == step].set_index("prompt")
        def point(p):
            return ", ".join(f"{now.loc[p, 'p_' + c]:.2f}" for c in concepts)
        labels = [f"{p}: ({point(p)})" for p in prompts]
        with out:
            out.clear_output(wait=True)
            display(image_grid([[images(step, p)] for p in prompts], labels, scale=scale,
                               caption=f"Samples at step {step:,}; in brackets the point in concept space."))

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, out])


def intervention_explorer(steps: list[int], strengths: list[float], generate: Callable[[int, float], tuple],
                          label: str = "strength", scale: int = 3) -> widgets.Widget:
    """Pick a checkpoint and an intervention strength; `generate(step, strength)` returns
    (images, point) and the samples regenerate in the kernel."""
    step_w = widgets.SelectionSlider(options=steps, value=steps[len(steps) // 2], description="step",
                                     continuous_update=False, layout=widgets.Layout(width="60%"))
    strength_w = widgets.SelectionSlider(options=strengths, value=strengths[0], description=label,
                                         continuous_update=False)
    out = widgets.Output()

    def show(_=None):
        imgs, point = generate(step_w.value, strength_w.value)
        with out:
            out.clear_output(wait=True)
            display(image_grid([[imgs]], [f"{label} {strength_w.value:g}"], scale=scale,
                               caption=f"step {step_w.value:,}: point in concept space {point}"))

    step_w.observe(show, names="value")
    strength_w.observe(show, names="value")
    show()
    return widgets.VBox([step_w, strength_w, out])


def sliders(render: Callable[..., object], **ranges) -> widgets.Widget:
    """Float sliders (name=(min, max, step, value)) that re-run `render(**values)` and show its result."""
    controls = {name: widgets.FloatSlider(min=lo, max=hi, step=step, value=value, description=name,
                                          continuous_update=False) for name, (lo, hi, step, value) in ranges.items()}
    out = widgets.Output()

    def show(_=None):
        with out:
            out.clear_output(wait=True)
            display(render(**{k: c.value for k, c in controls.items()}))

    for c in controls.values():
        c.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox(list(controls.values())), out])
