"""Sphinx configuration of the course site. Build it with `python tools/build_site.py`, never with
sphinx-build on this folder directly: the build tool stages these pages together with the
notebooks (their stored outputs, never re-executed), the bug zoo and BENCHMARKS.md into
build/site-src/ and runs Sphinx there with warnings as errors.

Everything a page needs is served from _site/ itself: the theme's scripts, styles and fonts ship
in its pip package, math is rendered to MathML at build time (latex2mathml; no MathJax, no script),
and saved widget views are replaced by their pictures when the site is staged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from docutils import nodes
from latex2mathml.converter import convert as latex_to_mathml

HERE = Path(__file__).resolve().parent
# conf.py runs from the staging folder build/site-src/; the repository is given by the build tool
REPO = Path(os.environ.get("VITLEARN_SITE_REPO", HERE.parents[1])).resolve()
sys.path.insert(0, str(REPO))

import vitlearn  # noqa: E402  (the API reference documents this checkout's library)

sys.path.insert(0, str(REPO / "tools"))
from build_site import repository_url  # noqa: E402

# The ONE configured repository URL: pyproject.toml [project.urls] Repository. The Colab and
# Binder links and the links to source files are built from it (tools/build_site.py).
REPOSITORY_URL = repository_url()

project = "vitlearn"
author = "the vitlearn authors"
copyright = "the vitlearn authors (MIT licence)"
release = version = vitlearn.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_extra", "README.md", "notebooks/images/README.md", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# -- notebooks: stored outputs only ------------------------------------------------------------------
nb_execution_mode = "off"
nb_ipywidgets_js = {}                 # widget views are made static when staging: no require.js from a CDN
nb_merge_streams = True
nb_output_folder = str(REPO / "build" / "site-outputs")   # images written from the stored outputs
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- API reference ---------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML ------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"vitlearn {release}"
html_static_path = ["_static"]
html_css_files = ["vitlearn.css"]
html_extra_path = ["_extra"]          # the .ipynb downloads (solution and exercise edition)
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": REPOSITORY_URL,
    "use_repository_button": False,   # a link, but its icon font is fine; kept off to keep the bar calm
    "use_download_button": False,     # each lesson has its own download links (both editions)
    "launch_buttons": {},             # our own Colab / Binder links open the exercise edition
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "auto"}  # light or dark as the reader's system says (unset: a console error)
html_sidebars = {"**": ["navbar-logo.html", "search-field.html", "sbt-sidebar-nav.html"]}


# -- math: LaTeX -> MathML at build time -----------------------------------------------------------------
def _mathml(latex: str, display: str, node) -> str:
    try:
        return latex_to_mathml(latex, display=display)
    except Exception as err:  # latex2mathml raises several types; the page and the formula are named
        from sphinx.util import logging

        logging.getLogger(__name__).warning(f"cannot render math {latex!r} to MathML: {err}", location=node)
        return f"<code>{latex}</code>"


def _visit_inline(self, node):
    self.body.append(f'<span class="math">{_mathml(node.astext(), "inline", node)}</span>')
    raise nodes.SkipNode


def _visit_block(self, node):
    self.body.append(f'<div class="math">{_mathml(node.astext(), "block", node)}</div>')
    raise nodes.SkipNode


# -- docstrings: written for help() and the notebooks, not for reStructuredText -------------------------
def _rst_problems(text: str, env) -> bool:
    """Whether docutils has anything to say about this docstring as reStructuredText."""
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    settings = get_default_settings(Parser)
    settings.report_level, settings.halt_level, settings.warning_stream = 5, 5, False
    settings.env = env  # the roles and directives Sphinx registered look for it
    document = new_document("<docstring>", settings)
    messages = []
    document.reporter.attach_observer(lambda msg: messages.append(msg) if msg["level"] >= 2 else None)
    Parser().parse(text, document)
    return bool(messages)


def _plain_docstring(app, what, name, obj, options, lines):
    """A docstring that is not clean reStructuredText (e.g. `*args` or an indented example in prose) is
    shown as it reads in help(): as a preformatted block, rather than failing the build or
    rendering half of it as emphasis. Other helpers edit these docstrings; the site keeps building."""
    if lines and _rst_problems("\n".join(lines), app.env):
        lines[:] = ["::", ""] + ["   " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstring)
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    app.config.html_math_renderer = "mathml"
