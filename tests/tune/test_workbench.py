import pytest

from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.workbench import Workbench
from deploy_robust.verify import ThreatModel


def test_a_workbench_refuses_an_output_folder_that_holds_another_tune(digits_loaded, tmp_path):
    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    options = TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=20)
    bench = Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)
    # every uniform precision is a contender (a whole-model fp16 bundle too), whatever the target runs per layer
    assert [c.name for c in bench.configs()] == ["uniform fp32", "uniform fp16", "uniform int8", "uniform int4"]
    assert (tmp_path / "cache" / "identity.json").is_file()
    Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)  # the same tune: reused
    other = TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=20, seed=1)
    with pytest.raises(UserError, match="holds a tune of another model, target, data or seed"):
        Workbench(digits_loaded, tmp_path, calib, data, other, log=lambda message: None)
