"""``mmgan new-plugin``: write a pip-installable plugin package from templates (``string.Template``).

Two skeletons: ``--modality`` adds a modality (a 1-D signal: data, stem, head, discriminator, sample
plots, as a :class:`mmgan.api.ModalityPlugin`); without it, a loss term for every modality with its own
config section. Each comes with a README, an entry point and a passing test that trains two steps.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from mmgan import __version__
from mmgan.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent / "templates"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def write_plugin(name: str, parent: Path, modality: bool = False) -> Path:
    """Write the package ``mmgan-<name>`` under ``parent``; returns its directory.

    ``name`` is the plugin's entry-point name (and the modality's, with ``modality``): lower case
    letters, digits and underscores, starting with a letter. An existing non-empty directory is refused.
    """
    if not NAME_RE.match(name):
        raise ConfigError(f"plugin name {name!r}: use lower case letters, digits and _ (starting with a letter)")
    package, dist = f"mmgan_{name}", f"mmgan-{name.replace('_', '-')}"
    root = Path(parent) / dist
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty; choose another name or -o directory")
    values = {"name": name, "package": package, "dist": dist, "mmgan_version": __version__, "length": 64}
    kind = TEMPLATES / ("modality" if modality else "loss")
    files = {
        root / "pyproject.toml": kind / "pyproject.toml.tmpl",
        root / "README.md": kind / "README.md.tmpl",
        root / package / "plugin.py": kind / "plugin.py.tmpl",
        root / "tests" / f"test_{package}.py": kind / "test_plugin.py.tmpl",
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
