"""The malicious-file corpus through the real CLI: exit 2, one line, and no code ever ran."""

import re

import pytest

from deploy_robust.bundle import open_bundle
from deploy_robust.errors import UserError
from tests.security import corpus


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, {case.name: case for case in corpus.build(folder)}


CASE_NAMES = [c.name for c in corpus.build(__import__("tempfile").mkdtemp(prefix="corpus-names-"))]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_no_malicious_file_runs_code(cli, cases, name):
    folder, by_name = cases
    case = by_name[name]
    code, stdout, stderr = cli(*case.command)
    lines = stderr.strip().splitlines()
    assert code == 2, (stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("deploy-robust: error: "), stderr
    assert re.search(case.message, lines[0]), lines[0]
    assert not (folder / corpus.MARKER).exists(), f"{name}: the payload ran"
    assert not (folder / "out").exists()


def test_recorded_code_runs_only_with_the_users_opt_in(cli, cases):
    folder, by_name = cases
    path = by_name["model:trained-metadata-absolute-code"].command[1]
    helper = str(folder / "trained_absolute" / "helper.py")
    code, _, stderr = cli("info", path, "--arch", f"{helper}:factory")  # the user names the same file
    assert code == 0, stderr
    assert (folder / corpus.MARKER).exists()  # ... and then, as asked, it runs
    (folder / corpus.MARKER).unlink()
    code, _, stderr = cli("info", path, "--arch", f"{folder / 'other.py'}:factory")  # another file is no opt-in
    assert code == 2 and "--trust-code" in stderr and not (folder / corpus.MARKER).exists()


@pytest.fixture(scope="module")
def digits_bundle(digits_checkpoint, tmp_path_factory):
    from deploy_robust.export import export_bundle
    from deploy_robust.ingest import load_model

    return export_bundle(load_model(digits_checkpoint, "digits_cnn"), tmp_path_factory.mktemp("b") / "fp32")


@pytest.mark.parametrize("link", ["latency.png", "eps_curve.png", "bench.json", "model.onnx"])
def test_bundles_with_symlinks_are_refused_and_never_written_through(cli, digits_bundle, tmp_path, link):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(digits_bundle.path, bundle)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    if link == "model.onnx":
        (bundle / link).rename(tmp_path / "model.onnx")
        target = tmp_path / "model.onnx"
    (bundle / link).unlink(missing_ok=True)
    (bundle / link).symlink_to(target)
    before = target.read_bytes()
    for command in (
        ["bench", bundle, "--duration", "0.05", "--batch", "1"],
        ["verify", bundle, "--data", "digits", "--eps", "0.1", "--n", "8", "--no-sweep"],
    ):
        code, _, stderr = cli(*command)
        assert code == 2 and "symbolic link" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert target.read_bytes() == before
    with pytest.raises(UserError, match="symbolic link"):
        open_bundle(bundle)
