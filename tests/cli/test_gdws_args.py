import argparse

import pytest

from deploy_robust.cli.gdws_args import add_gdws_args, describe_plan, request_from_args
from deploy_robust.errors import UserError


def _parse(argv, prefix="gdws-"):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    add_gdws_args(parser, prefix=prefix)
    return parser.parse_args(argv)


def test_no_gdws_option_means_no_rewrite():
    assert request_from_args(_parse([]), prefix="gdws-") is None


def test_the_options_become_a_request_with_the_data_left_to_the_rewrite():
    ns = _parse(
        [
            "--gdws-budget",
            "0.25",
            "--gdws-skip",
            "conv1, layer*",
            "--gdws-alpha-data",
            "digits:train",
            "--gdws-alpha-eps",
            "8/255",
        ]
    )
    request = request_from_args(ns, prefix="gdws-")
    assert request.budget == 0.25 and request.skip == ("conv1", "layer*")
    assert request.alpha_data == "digits:train" and request.alpha_settings.eps == 8 / 255


def test_contradictory_options_are_one_line():
    with pytest.raises(UserError, match="one of --gdws-beta and --gdws-budget"):
        request_from_args(_parse(["--gdws-beta", "0.1", "--gdws-budget", "0.5"]), prefix="gdws-")
    with pytest.raises(UserError, match="needs --gdws-alpha-eps"):
        request_from_args(_parse(["--gdws-budget", "0.5", "--gdws-alpha-data", "x"]), prefix="gdws-")


def test_the_plan_table_lists_every_layer(tiny_model):
    from deploy_robust.transforms.gdws.network import plan_gdws

    plan = plan_gdws(tiny_model, (3, 16, 16), budget=0.5)
    text = describe_plan(plan)
    assert all(layer.name in text for layer in plan.layers) and "fewer MACs" in text
