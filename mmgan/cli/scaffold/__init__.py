"""``mmgan new-plugin``: write a pip-installable plugin package from templates (``string.Template``).

Three skeletons: ``--modality`` adds a modality as a :class:`mmgan.api.ModalityPlugin` with its data,
stem, head, discriminator and sample writer, in one of two shapes (``--shape``): ``sequence``, a 1-D
signal drawn as line plots, or ``image``, 3x32x32 RGB written as a PNG grid; without ``--modality``, a
loss term for every modality with its own config section. Each comes with a README, an entry point and
a passing test that trains two steps.

Templates: ``templates/loss/``, and for a modality ``templates/modality-<shape>/`` with the files every
shape shares (``pyproject.toml.tmpl``) in ``templates/modality/``. One directory deep, so that the
package-data glob ``cli/scaffold/templates/*/*.tmpl`` ships them all.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from mmgan import __version__
from mmgan.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent / "templates"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# the shapes of a modality skeleton (templates/modality-<shape>/); the first is the default
SHAPES = ("sequence", "image")


def _template(kind: str, file: str) -> Path:
    """``kind``'s own template ``file``, or the one every modality shape shares."""
    own = TEMPLATES / kind / file
    return own if own.is_file() else TEMPLATES / "modality" / file


def write_plugin(name: str, parent: Path, modality: bool = False, shape: str | None = None) -> Path:
    """Write the package ``mmgan-<name>`` under ``parent``; returns its directory.

    ``name`` is the plugin's entry-point name (and the modality's, with ``modality``): lower case
    letters, digits and underscores, starting with a letter. ``shape`` picks the modality skeleton (one of
    :data:`SHAPES`; None: the first, ``sequence``) and needs ``modality``. An existing non-empty directory
    is refused.
    """
    if not NAME_RE.match(name):
        raise ConfigError(f"plugin name {name!r}: use lower case letters, digits and _ (starting with a letter)")
    if shape is not None and not modality:
        raise ConfigError(f"--shape {shape} needs --modality (without it, new-plugin writes a loss term, "
                          "which has no shape)")
    if shape is not None and shape not in SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    package, dist = f"mmgan_{name}", f"mmgan-{name.replace('_', '-')}"
    root = Path(parent) / dist
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty; choose another name or -o directory")
    values = {"name": name, "package": package, "dist": dist, "mmgan_version": __version__, "length": 64}
    kind = f"modality-{shape or SHAPES[0]}" if modality else "loss"
    files = {
        root / "pyproject.toml": _template(kind, "pyproject.toml.tmpl"),
        root / "README.md": _template(kind, "README.md.tmpl"),
        root / package / "plugin.py": _template(kind, "plugin.py.tmpl"),
        root / "tests" / f"test_{package}.py": _template(kind, "test_plugin.py.tmpl"),
    }
    try:
        for target, template in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        (root / package / "__init__.py").write_text(f'"""mmgan plugin {name}."""\n\n__version__ = "0.1.0"\n',
                                                    encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the plugin package to {root}: {exc.strerror or exc}") from None
    return root
