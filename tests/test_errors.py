from deploy_robust.errors import GateFailed, UserError, first_line


def test_exit_codes_tell_bad_input_from_a_failed_gate():
    assert UserError.exit_code == 2 and GateFailed.exit_code == 1


def test_first_line_keeps_one_bounded_line():
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10
    assert first_line(KeyError()) == "KeyError"
