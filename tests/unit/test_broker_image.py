"""The broker image's build context is this folder's docker/emqx from any working directory: the
project dir's (every deployed stack's "docker/emqx") or that of a program using the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.broker_image import BUILD_CONTEXT, BUILD_DIR, build_context

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_from_the_project_dir_the_context_is_the_one_deployed_stacks_have(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_DIR)
    assert build_context() == BUILD_CONTEXT == "docker/emqx"


def test_from_a_consumers_program_the_context_leads_to_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (tmp_path / build_context()).resolve() == BUILD_DIR == PROJECT_DIR / "docker" / "emqx"
