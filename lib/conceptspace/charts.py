"""Altair charts and image grids for the book: pure functions of tables, interactive in the browser.

Every chart runs without a kernel (sliders and selections are vega-lite params), so the rendered
book stays explorable offline. Used by: every chapter.
"""
from __future__ import annotations

import base64
import html
import io

import altair as alt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from .data import value_name

alt.data_transformers.disable_max_rows()


def axis_title(concept: str) -> str:
    return f"P({value_name(concept, 1)})"


def corners(concepts, class_names: dict) -> pd.DataFrame:
    """The corners of the 2-D concept space, labelled with their class names."""
    rows = [{"x": float(c[0]), "y": float(c[1]), "label": name} for c, name in class_names.items()]
    return pd.DataFrame(rows)


def checkpoint_slider(cs: pd.DataFrame) -> alt.Parameter:
    last = int(cs["step"].nunique()) - 1
    return alt.param(name="checkpoint", value=last,
                     bind=alt.binding_range(min=0, max=last, step=1, name="checkpoint index "))


def trajectories(cs: pd.DataFrame, x: str = "color", y: str = "size", held_out=(), class_names: dict | None = None,
                 color: str = "prompt", title: str = "", width: int = 380, ordinal: bool = False,
                 slider: alt.Parameter | None = None, marks: pd.DataFrame | None = None) -> alt.Chart:
    """Concept-space trajectories, one per `color` group, with a checkpoint slider.

    Held-out classes are drawn thick; hovering a point shows its step and coordinates; the slider
    reveals the trajectories up to a checkpoint and marks where each group is at that moment. Pass
    `slider` to share it with other views (the caller then adds it to the combined chart); `marks`
    (columns p_<x>, p_<y>, label) are drawn as crosses, e.g. detected turns.
    """
    df = cs.copy()
    df["checkpoint"] = df["step"].rank(method="dense").astype(int) - 1
    df["held_out"] = df["prompt"].isin(list(held_out))
    kind = "O" if ordinal else "N"
    pick = alt.selection_point(fields=[color], bind="legend", name=f"pick_{x}_{y}")
    own_slider = slider is None
    slider = slider if slider is not None else checkpoint_slider(df)
    scale = alt.Scale(domain=[0, 1])
    base = alt.Chart(df).encode(
        x=alt.X(f"p_{x}:Q", scale=scale, title=axis_title(x)),
        y=alt.Y(f"p_{y}:Q", scale=scale, title=axis_title(y)),
        color=alt.Color(f"{color}:{kind}", title=color,
                        scale=alt.Scale(scheme="viridis") if ordinal else alt.Undefined),
        opacity=alt.condition(pick, alt.value(0.9), alt.value(0.1)),
    )
    visible = alt.datum.checkpoint <= slider
    lines = base.mark_line(interpolate="linear").encode(
        order="step:Q", detail=f"{color}:{kind}",
        strokeWidth=alt.condition(alt.datum.held_out, alt.value(3.5), alt.value(1.5)),
        strokeDash=alt.condition(alt.datum.held_out, alt.value([1, 0]), alt.value([4, 3])),
    ).transform_filter(visible)
    tooltip = [alt.Tooltip(f"{color}:{kind}"), alt.Tooltip("step:Q"), alt.Tooltip(f"p_{x}:Q", format=".2f"),
               alt.Tooltip(f"p_{y}:Q", format=".2f")]
    if "joint" in df:
        tooltip.append(alt.Tooltip("joint:Q", format=".2f", title="joint accuracy"))
    points = base.mark_circle(size=35).encode(tooltip=tooltip).transform_filter(visible).add_params(pick)
    now = base.mark_point(size=220, filled=True, opacity=1, stroke="black", strokeWidth=1).encode(
        tooltip=tooltip).transform_filter(alt.datum.checkpoint == slider)
    label = alt.Chart(df).transform_filter(alt.datum.checkpoint == slider).transform_aggregate(
        step="max(step)").mark_text(align="right", baseline="bottom", dx=-4, dy=-4, fontSize=13).encode(
        x=alt.value(width), y=alt.value(width), text=alt.Text("step:Q", format=",d"))
    layers = [lines, points, now, label.encode(text=alt.Text("label:N")).transform_calculate(
        label="'step ' + format(datum.step, ',d')")]
    if marks is not None and len(marks):
        layers.append(alt.Chart(marks).mark_point(shape="cross", size=260, color="black", strokeWidth=2).encode(
            x=alt.X(f"p_{x}:Q", scale=scale), y=alt.Y(f"p_{y}:Q", scale=scale), tooltip=["label:N"]))
    if class_names:
        cdf = corners(None, class_names)
        layers.insert(0, alt.Chart(cdf).mark_text(fontSize=11, color="gray", dy=-9).encode(
            x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale), text="label:N"))
        layers.insert(0, alt.Chart(cdf).mark_square(size=60, color="lightgray").encode(
            x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale)))
    chart = alt.layer(*layers).properties(width=width, height=width, title=title)
    return chart.add_params(slider) if own_slider else chart


def samples_beside_trajectories(cs: pd.DataFrame, strips: pd.DataFrame, **kwargs) -> alt.Chart:
    """Concept-space trajectories next to the samples of each prompt, both following one checkpoint
    slider: the book's kernel-free version of the checkpoint scrubber widget. `strips` has columns
    step, prompt and url (a PNG data URI, see `strip_url`)."""
    slider = checkpoint_slider(cs)
    left = trajectories(cs, slider=slider, **kwargs)
    df = strips.copy()
    df["checkpoint"] = df["step"].rank(method="dense").astype(int) - 1
    right = alt.Chart(df).mark_image(width=200, height=50).encode(
        x=alt.value(110), y=alt.Y("prompt:N", title=None), url="url:N",
        tooltip=["prompt:N", "step:Q"]).transform_filter(alt.datum.checkpoint == slider).properties(
        width=220, height=60 * df["prompt"].nunique(), title="samples at this checkpoint")
    return alt.hconcat(left, right).add_params(slider)


def strip_url(images, scale: int = 3) -> str:
    """A row of images as one PNG data URI (for altair's image mark)."""
    arr = to_uint8(images)
    row = np.concatenate(list(arr), axis=1)
    return "data:image/png;base64," + _png(row, scale)


def over_training(df: pd.DataFrame, value: str, color: str = "prompt", title: str = "", log_x: bool = True,
                  y_title: str | None = None, rule_at: float | None = None, width: int = 420) -> alt.Chart:
    """A quantity over training steps, one line per group; click the legend to isolate a group."""
    pick = alt.selection_point(fields=[color], bind="legend")
    chart = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q", scale=alt.Scale(type="log" if log_x else "linear"), title="training step"),
        y=alt.Y(f"{value}:Q", title=y_title or value),
        color=alt.Color(f"{color}:N"),
        opacity=alt.condition(pick, alt.value(1), alt.value(0.15)),
        tooltip=[alt.Tooltip(f"{color}:N"), "step:Q", alt.Tooltip(f"{value}:Q", format=".3f")],
    ).add_params(pick)
    if rule_at is not None:
        rule = alt.Chart(pd.DataFrame({"y": [rule_at]})).mark_rule(strokeDash=[4, 4], color="gray")
        chart = chart + rule.encode(y="y:Q")
    return chart.properties(width=width, height=260, title=title)


def with_ci(df: pd.DataFrame, x: str, y: str, lo: str, hi: str, color: str, title: str = "", x_title: str = "",
            y_title: str = "", log_x: bool = False, log_y: bool = False, width: int = 380,
            tooltip=()) -> alt.Chart:
    """Points with confidence intervals, one colour per group; click the legend to isolate one."""
    pick = alt.selection_point(fields=[color], bind="legend")
    # a log axis spans the data (vega's "nice" log domain would pad it to whole decades)
    def scale(log):
        return alt.Scale(type="log", nice=False, padding=8) if log else alt.Scale(zero=False)
    base = alt.Chart(df).encode(
        x=alt.X(f"{x}:Q", scale=scale(log_x), title=x_title or x),
        color=alt.Color(f"{color}:N"), opacity=alt.condition(pick, alt.value(1), alt.value(0.15)))
    bars = base.mark_rule().encode(y=alt.Y(f"{lo}:Q", scale=scale(log_y), title=y_title or y), y2=f"{hi}:Q")
    points = base.mark_line(point=True).encode(
        y=alt.Y(f"{y}:Q", scale=scale(log_y)),
        tooltip=[alt.Tooltip(f"{color}:N"), alt.Tooltip(f"{x}:Q", format=".3g"), alt.Tooltip(f"{y}:Q", format=".3g"),
                 *tooltip])
    return (bars + points).add_params(pick).properties(width=width, height=280, title=title)


def _png(image: np.ndarray, scale: int) -> str:
    img = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def to_uint8(images) -> np.ndarray:
    """(N,3,R,R) tensors in [0,1] or uint8 → (N,R,R,3) uint8."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        if images.dtype != torch.uint8:
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        images = images.numpy()
    return np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))


def image_grid(rows: list, row_labels: list[str], col_labels: list[str] | None = None, scale: int = 4,
               caption: str = "", alt_text: str = "") -> "HTMLGrid":
    """A table of images (each cell a strip of one or more images), embedded as PNG, no network."""
    cells = []
    for label, strip in zip(row_labels, rows):
        imgs = []
        for item in strip:
            if item is None:
                imgs.append("<td></td>")
                continue
            arr = to_uint8(item)
            tiles = "".join(f'<img src="data:image/png;base64,{_png(a, scale)}" alt="{html.escape(alt_text or label)}" '
                            f'style="margin:1px;image-rendering:pixelated">' for a in arr)
            imgs.append(f"<td style='padding:2px'>{tiles}</td>")
        th = f"<th style='text-align:right;padding-right:6px'>{html.escape(label)}</th>"
        cells.append(f"<tr>{th}{''.join(imgs)}</tr>")
    head = ""
    if col_labels:
        ths = "".join(f"<th style='font-weight:normal'>{html.escape(c)}</th>" for c in col_labels)
        head = f"<tr><th></th>{ths}</tr>"
    cap = f"<caption style='caption-side:bottom'>{html.escape(caption)}</caption>" if caption else ""
    return HTMLGrid(f"<table class='concept-grid'>{cap}{head}{''.join(cells)}</table>")


class HTMLGrid:
    """HTML that notebooks and the book display as is."""

    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup


def sim_closed_form(mu1: float, var1: float, *, dim: int, lr: float, steps, mu2: float = 2.0,
                    var2: float = 0.05) -> alt.Chart:
    """Chapter 5's live closed form: the path of f(x̂) (fractions of each target) for one (μ₁, Var₁)."""
    from .sim import closed_form_grid
    df = closed_form_grid([mu1], [var1], mu2, var2, dim, lr, steps)
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("f1:Q", scale=alt.Scale(domain=[0, 1]), title="fraction of concept 1"),
        y=alt.Y("f2:Q", scale=alt.Scale(domain=[0, 1]), title="fraction of concept 2"), order="step:Q",
    ).properties(width=300, height=300, title=f"a₁ = {df.a1.iloc[0]:.2f}, a₂ = {df.a2.iloc[0]:.2f}")
