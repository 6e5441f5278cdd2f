from deploy_robust.exporters.profiles import PROFILES, get_profile
from deploy_robust.targets import TARGETS


def test_each_target_has_the_quantization_its_runtime_wants():
    cpu, cuda, trt = get_profile("ort-cpu"), get_profile("ort-cuda"), get_profile("tensorrt")
    assert not cpu.signed_activations and cuda.signed_activations and trt.signed_activations
    assert cpu.int8_weight_levels == 63 and cuda.int8_weight_levels == trt.int8_weight_levels == 127
    assert trt.residual_add == "skip" and trt.carry_through == () and not trt.integer_clip
    assert cpu.int4_conv_storage == "int4" and trt.int4_conv_storage == "int8"
    assert set(PROFILES) == {t.profile for t in TARGETS.values()} == {"ort-cpu", "ort-cuda", "tensorrt"}
