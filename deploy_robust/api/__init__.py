"""The library API, in the shape of the commands: a request object in, a `Result` out (its JSON document
with the gates evaluated, the files it wrote, the bundle or module it made).

    from deploy_robust.api import ExportRequest, VerifyRequest, export, verify
    from deploy_robust.export import ExportOptions
    from deploy_robust.pipeline import VerifyGates
    export(ExportRequest("model.pt", "out/int8", ExportOptions("int8"), calib="train.npz"))
    result = verify(VerifyRequest("out/int8", data="test.npz", eps="8/255", gates=VerifyGates(min_robust_acc=0.45)))
    result.passed, result.document["robust_accuracy"], result.failure

Every verb of `deploy-robust` only maps its arguments onto one of these requests and prints the result;
a failing gate is `result.passed == False` here and exit code 1 there. One module per group of verbs:
`stages` (export, eval, verify, tune), `bench`, `training` (train, dq), `models` (gdws, ensemble, info).
"""

from deploy_robust.api.bench import BenchRequest, bench
from deploy_robust.api.common import ModelOptions, Result
from deploy_robust.api.models import EnsembleRequest, GDWSModelRequest, InfoRequest, ensemble, gdws, info
from deploy_robust.api.stages import (
    EvalRequest,
    ExportRequest,
    TuneRequest,
    VerifyRequest,
    evaluate,
    export,
    tune,
    verify,
)
from deploy_robust.api.training import (
    DefensiveQuantizationRequest,
    PGDEvaluation,
    TrainingOptions,
    TrainRequest,
    defensive_quantize,
    train,
)
from deploy_robust.pipeline import SAPOptions, SqueezeOptions, Transforms, VerifyGates

__all__ = [
    "BenchRequest", "DefensiveQuantizationRequest", "EnsembleRequest", "EvalRequest", "ExportRequest",
    "GDWSModelRequest", "InfoRequest", "ModelOptions", "PGDEvaluation", "Result", "SAPOptions", "SqueezeOptions",
    "TrainRequest", "TrainingOptions", "Transforms", "TuneRequest", "VerifyGates", "VerifyRequest", "bench",
    "defensive_quantize", "ensemble", "evaluate", "export", "gdws", "info", "train", "tune", "verify",
]  # fmt: skip
