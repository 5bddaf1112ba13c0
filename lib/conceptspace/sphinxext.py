"""Sphinx extension: serve the JavaScript that charts and widgets need from the book itself.

Without it, the built book loads vega and the widget manager from CDNs and nothing renders offline
(book/references.md: stack-offline-assets). The vega bundle comes from vl-convert (a pip package, so no
web at build time), wrapped so its globals do not clash with Sphinx's; altair's own template then finds
it through the `VEGA_DEBUG` version shim. The widget manager and MathJax are vendored under `book/_vendor/`
(see its README). Scripts are attached only to pages that need them.
"""
from __future__ import annotations

from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "book" / "_vendor"


def _write_vega_assets(folder: Path) -> None:
    import vl_convert
    from altair.vegalite.v6 import display

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "vega-bundle.version"
    version = f"{vl_convert.__version__}-{display.VEGALITE_VERSION}"
    if not stamp.exists() or stamp.read_text() != version:
        bundle = vl_convert.javascript_bundle()
        (folder / "vega-bundle.js").write_text("(function(){\n" + bundle + "\n})();\n")
        stamp.write_text(version)
    (folder / "vega-compat.js").write_text(
        "var VEGA_DEBUG = Object.assign(window.VEGA_DEBUG || {}, "
        f'{{vega_version: "{display.VEGA_VERSION}", vegalite_version: "{display.VEGALITE_VERSION}", '
        f'vegaembed_version: "{display.VEGAEMBED_VERSION}"}});\n')


def _builder_inited(app) -> None:
    cache = Path(app.outdir).parent / ".conceptspace_static"
    _write_vega_assets(cache)
    # Added here, not in _config.yml: Jupyter Book would otherwise inject every file on every page.
    app.config.html_static_path.append(str(cache))
    if VENDOR.exists():
        app.config.html_static_path.append(str(VENDOR))
    if app.config.mathjax_path == "mathjax/tex-svg.js":  # before MathJax itself (priority 500)
        app.add_js_file("mathjax/hub-compat.js", priority=400)


def _config_inited(app, config) -> None:
    if (VENDOR / "widgets" / "embed.js").exists():
        config.nb_ipywidgets_js = {"widgets/embed.js": {}}
    else:  # never fall back to a CDN: pages keep their widget state but show no live widgets
        config.nb_ipywidgets_js = {}
    if (VENDOR / "mathjax" / "tex-svg.js").exists():  # relative to _static: math typesets offline
        config.mathjax_path = "mathjax/tex-svg.js"


def _page_context(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body", "")
    if "vegaEmbed" in body:
        app.add_js_file("vega-bundle.js")
        app.add_js_file("vega-compat.js")


def setup(app):
    app.setup_extension("myst_nb")
    app.connect("config-inited", _config_inited, priority=900)
    app.connect("builder-inited", _builder_inited)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
