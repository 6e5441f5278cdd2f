from deploy_robust.bench.power import parse_milliwatts


def test_tegrastats_rails_of_each_jetson_generation():
    orin = "RAM 2285/30536MB ... VDD_GPU_SOC 2754mW/2754mW VDD_CPU_CV 393mW/393mW VDD_IN 5506mW/5506mW"
    xavier = "RAM 1903/7771MB ... POM_5V_IN 3126/3126 POM_5V_GPU 0/0"
    nano = "RAM 1445/3964MB ... POM_5V_IN 2154mW/2154mW POM_5V_GPU 40mW/40mW"
    assert parse_milliwatts(orin) == 5506.0
    assert parse_milliwatts(nano) == 2154.0
    assert parse_milliwatts(xavier) is None  # no unit on this older format: not guessed
