"""Docs that show what code produces (config keys, CLI help, `mmgan plugins`) are produced by
tools/docs.py; this fails when someone changes the code and not the page."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_generated_docs_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "docs.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_every_config_key_is_in_the_reference_with_a_meaning():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import docs
    finally:
        sys.path.pop(0)
    from mmgan.config import RunSection, TrainConfig
    from mmgan.contract.manager import get_modality
    from mmgan.trunk import TrunkConfig

    page = (ROOT / "docs" / "config.md").read_text()
    for cls in (RunSection, TrainConfig, TrunkConfig, *(get_modality(m).config_class for m in docs.BUILT_IN)):
        comments = docs.field_comments(cls)
        for name in cls.__dataclass_fields__:
            assert comments.get(name), f"{cls.__name__}.{name} has no comment saying what it means"
            assert f"| `{name}` |" in page


def test_every_public_name_is_documented_with_a_docstring():
    import inspect

    import mmgan.api as api

    page = (ROOT / "docs" / "api.md").read_text()
    assert f"Contract version: **{api.CONTRACT_VERSION}**" in page
    for name in api.__all__:
        obj = getattr(api, name)
        if isinstance(obj, (int, str)):
            continue
        assert inspect.getdoc(obj), f"mmgan.api.{name} has no docstring"
        assert f"### `{name}`" in page, f"mmgan.api.{name} is not in docs/api.md"


def test_what_plugins_imported_before_the_public_api_still_imports():
    from mmgan.errors import ConfigError, DataError  # noqa: F401
    from mmgan.evaluation import EvalContext  # noqa: F401
    from mmgan.files import atomic_path  # noqa: F401
    from mmgan.hookspecs import hookimpl, mmgan_build_generator  # noqa: F401
    from mmgan.losses import LossContext, logits_of  # noqa: F401
    from mmgan.metrics import frechet_distance  # noqa: F401
    from mmgan.modality import Modality, ModalityConfig  # noqa: F401
    from mmgan.modality_plugin import ModalityPlugin  # noqa: F401
    from mmgan.report.section import ReportContext, ReportSection  # noqa: F401
    from mmgan.shards import PackStream, ShardCodec  # noqa: F401
