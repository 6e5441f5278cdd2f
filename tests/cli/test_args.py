import argparse

import pytest

from deploy_robust.api import ModelOptions
from deploy_robust.cli import args
from deploy_robust.limits import MAX_SEED


def test_numbers_take_fractions_and_refuse_non_finite_values():
    assert args.number("8/255") == 8 / 255 and args.numbers("0.5, 1/4") == (0.5, 0.25)
    for bad in ("inf", "nan", "1/0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            args.number(bad)


@pytest.mark.parametrize(
    "parse, text, hint",
    [
        (args.fraction, "60", "did you mean 0.6?"),
        (args.linf_eps, "8", "did you mean 8/255?"),
        (args.percentile, "0", "(0, 100]"),
        (args.seed, str(MAX_SEED + 1), "a seed must lie in"),
        (args.positive_int, "0", "must be positive"),
        (args.non_negative_int, "-1", ">= 0"),
        (args.shape, "3,32", "three positive integers"),
        (args.positive_number, "-2", "must be positive"),
    ],
)
def test_out_of_range_values_say_what_was_meant(parse, text, hint):
    with pytest.raises(
        argparse.ArgumentTypeError,
        match=hint.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("?", r"\?"),
    ):
        parse(text)


def test_model_arguments_map_onto_the_apis_model_options():
    parser = argparse.ArgumentParser()
    args.add_model_args(parser)
    ns = parser.parse_args(
        [
            "--arch",
            "resnet18",
            "--trust-code",
            "--input-shape",
            "3x32x32",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--num-classes",
            "10",
        ]
    )
    options = args.model_options(ns)
    assert isinstance(options, ModelOptions) and options.arch == "resnet18" and options.trust_code
    assert not options.trust_pickle and options.overrides.shape == (3, 32, 32) and options.overrides.num_classes == 10


def test_durations_take_seconds_minutes_and_hours():
    assert args.duration("90s") == 90 and args.duration("30m") == 1800 and args.duration("1.5h") == 5400
    assert args.duration("45") == 45
    for bad in ("30x", "m", "-5m", "0", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            args.duration(bad)
