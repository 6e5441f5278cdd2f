from deploy_robust import progress


def test_quiet_mode_returns_the_items_untouched(monkeypatch):
    items = [1, 2, 3]
    progress.set_quiet(True)
    try:
        assert not progress.enabled() and progress.progress(items, total=3) is items
    finally:
        progress.set_quiet(False)


def test_ci_and_pipes_get_no_bar(monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert not progress.enabled()


def test_a_hand_advanced_bar_is_a_no_op_where_bars_are_off(monkeypatch):
    monkeypatch.setenv("CI", "1")
    shown = progress.bar(10, "x")
    shown.update(3)
    shown.close()  # nothing printed, nothing raised
