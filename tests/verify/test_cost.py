"""deploy_robust.verify.cost: images through S (with and without an input gradient) and E, per attack."""

import numpy as np
import torch

from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.cost import Passes, describe


def test_passes_count_images_by_how_each_model_was_called():
    passes = Passes()
    model = passes.model(lambda x: x.flatten(1)[:, :3])
    engine = passes.engine(lambda x: np.zeros((len(x), 3)))
    x = torch.zeros(5, 1, 2, 2, requires_grad=True)
    model(x)
    with torch.no_grad():
        model(x)
    model(torch.zeros(2, 1, 2, 2))
    engine(np.zeros((7, 1, 2, 2)))
    assert describe(passes.counts) == {"S_forward_backward": 5, "S_forward": 7, "E_images": 7}


def test_verify_reports_each_attacks_passes_from_its_steps(digits_bundles, digits_test):
    doc = run_verify(
        digits_bundles["plain"],
        digits_test,
        ThreatModel("linf", 0.1),
        VerifyOptions(n=40, suite="quick", sweep=None, resume=False, layout="contiguous"),
    )
    rows = {a["attack"]: a for a in doc["attacks"]}
    pgd, square = rows["pgd-ce"], rows["square"]
    # up to 20 PGD steps, each a forward and an input gradient of every attacked point not yet broken (early exit)
    robust_after = round(pgd["robust_accuracy"] * 40)
    assert 20 * robust_after <= pgd["passes"]["S_forward_backward"] <= 20 * pgd["points_attacked"]
    assert pgd["passes"]["S_forward_backward"] < 20 * pgd["points_attacked"] or pgd["broke"] == 0
    assert rows["fgsm"]["passes"]["S_forward_backward"] == rows["fgsm"]["points_attacked"]
    assert square["passes"]["S_forward_backward"] == 0
    assert square["passes"]["E_images"] >= 40  # at least the scoring of the batch; queries on what it attacked
