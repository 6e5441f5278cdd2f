from deploy_robust import cpu


def test_only_x86_without_vnni_or_amx_saturates():
    assert cpu.u8s8_saturates(frozenset({"avx2", "fma"}), x86=True)
    assert not cpu.u8s8_saturates(frozenset({"avx2", "avx512_vnni"}), x86=True)
    assert not cpu.u8s8_saturates(frozenset({"avx2", "avx_vnni"}), x86=True)
    assert not cpu.u8s8_saturates(frozenset({"amx_int8"}), x86=True)
    assert not cpu.u8s8_saturates(frozenset({"asimd"}), x86=False)


def test_this_cpu_is_read_once():
    assert cpu.cpu_flags() is cpu.cpu_flags()
    flags = cpu.cpu_flags()
    assert cpu.u8s8_saturates() == (cpu.is_x86() and not flags & set(cpu.INT8_DOT_PRODUCT_FLAGS))
