"""The corpus tests cannot pass over nothing: zero cases fail under CI and skip locally, naming
the folder they looked in (``tests/test_email_corpus.py``).

These run without the corpus: they point the corpus tests at an empty folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.test_email_corpus as corpus
from intake.blobs import FileBlobStore


@pytest.fixture
def empty_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    monkeypatch.setattr(corpus, "CORPUS", folder)
    # A tally of its own, so the real corpus run's table never shows these empty sets.
    monkeypatch.setattr(corpus, "RESULTS", {})
    return folder


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs", fsync=False)


@pytest.fixture
def ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def test_a_set_with_no_cases_fails_under_ci(
    empty_corpus: Path, blobs: FileBlobStore, ci: None
) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        corpus.test_cpython_messages(blobs)
    message = str(failed.value)
    assert f"no cases in {empty_corpus / 'cpython-test-email'}" in message
    assert "OMNIDESK_CORPUS_DIR" in message  # what to do about it


def test_the_whole_corpus_run_over_nothing_fails_under_ci(
    empty_corpus: Path, blobs: FileBlobStore, ci: None
) -> None:
    with pytest.raises(pytest.fail.Exception, match="no cases in"):
        corpus.test_no_crash_on_any_message(blobs)


def test_a_missing_expectations_file_fails_under_ci(empty_corpus: Path, ci: None) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        corpus.test_talon_replies()
    assert "expected.json" in str(failed.value) and str(empty_corpus / "talon") in str(failed.value)


def test_a_missing_corpus_folder_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: None
) -> None:
    monkeypatch.setattr(corpus, "CORPUS", tmp_path / "not-there")
    with pytest.raises(pytest.fail.Exception, match="not-there"):
        corpus.require_corpus()


def test_locally_a_set_with_no_cases_skips_and_says_where(
    empty_corpus: Path, blobs: FileBlobStore, local: None
) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        corpus.test_cpython_messages(blobs)
    assert str(empty_corpus / "cpython-test-email") in str(skipped.value)


def test_zero_of_zero_is_no_pass_rate() -> None:
    # The table must not show an empty set at 100 %.
    assert corpus.SetResult("empty", Path("nowhere")).rate == 0.0
