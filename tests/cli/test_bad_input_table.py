"""docs/trust.md's bad-input table is what the CLI really prints: each case exits 2 with one line."""

import pytest

from tests.cli import bad_input_table
from tests.conftest import REPO


@pytest.fixture(scope="module")
def results():
    return bad_input_table.table()


def test_every_bad_input_is_one_line_and_exit_2(results):
    _, runs = results
    for case, code, stdout, stderr in runs:
        lines = stderr.strip().splitlines()
        assert code == 2, (case, stderr)
        assert len(lines) == 1 and lines[0].startswith("deploy-robust: error: "), (case, stderr)
        assert "Traceback" not in stderr


def test_the_docs_table_is_generated_from_these_runs(results):
    text, _ = results
    page = (REPO / "docs" / "trust.md").read_text()
    assert text in page, "docs/trust.md's bad-input table is stale: run python -m tests.cli.bad_input_table --write"
