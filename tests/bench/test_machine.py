from deploy_robust.bench.machine import cpu_info, machine_info


def test_machine_info_names_cpu_and_libraries():
    info = machine_info()
    assert info["cpu"]["logical_cores"] >= 1 and "flags" in info["cpu"]
    assert {"torch", "onnxruntime", "onnx", "deploy_robust"} <= set(info["tools"])


def test_int8_dot_product_flag_follows_the_cpu_flags():
    info = cpu_info()
    assert info["int8_dot_product"] == any(
        f in info["flags"] for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
    )
