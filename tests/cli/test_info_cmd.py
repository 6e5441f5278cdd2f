import json

from deploy_robust import zoo


def test_zoo_listing(cli):
    code, stdout, _ = cli("info", "--zoo", "--json")
    assert code == 0 and [e["name"] for e in json.loads(stdout)] == zoo.names()


def test_model_file_info(cli, tiny_checkpoint, tiny_arch_file):
    code, stdout, _ = cli("info", tiny_checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16")
    assert code == 0 and "conv2" in stdout and "Conv2d" in stdout


def test_help_everywhere(cli, capsys):
    for command in ("export", "eval", "info", "demo"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and out.startswith("usage: deploy-robust " + command)
    code, _, _ = cli()
    assert code == 2
