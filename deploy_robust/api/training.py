"""train and dq: a robust model file from a built-in architecture, and its Defensive Quantization.

Both write a weights-only model file (`save_model_file`) that records how it was made; `export` reads it
like any checkpoint. Under torchrun every process trains and only rank 0 evaluates and writes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy_robust.api.common import ModelOptions, Result
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.model import arch as arch_resolver
from deploy_robust.model.model_file import save_model_file
from deploy_robust.normalize import normalizer, with_normalization
from deploy_robust.seeding import seed_everything
from deploy_robust.train import distributed, make_perturb, train_classifier
from deploy_robust.train.adversarial import Perturb
from deploy_robust.train.evaluation import clean_and_pgd
from deploy_robust.transforms.dq import DQRequest, defensive_quantization


@dataclass(frozen=True)
class TrainingOptions:
    """Optimization and adversarial training, shared by `train` and `dq`."""

    epochs: int = 10
    batch: int = 128  # images per process per step
    lr: float = 3e-3  # peak of the one-cycle Adam schedule
    adv: str = "pgd"  # "none", "fgsm" (random start) or "pgd"
    eps: float | None = None  # L-inf radius on [0, 1] images; needed unless adv is "none"
    steps: int = 7
    step_size: float | None = None  # default 2.5 eps / steps
    augment: bool = False  # random crops and flips
    device: str = "auto"  # auto: CUDA when torch sees a GPU (under torchrun, LOCAL_RANK's)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.adv != "none" and self.eps is None:
            raise UserError(f"--adv {self.adv} needs --eps (e.g. 2/255)")

    def perturb(self) -> Perturb | None:
        return make_perturb(self.adv, self.eps or 0.0, self.steps, self.step_size)


@dataclass(frozen=True)
class PGDEvaluation:
    """The final clean and PGD accuracy on test images (attacked in float, STE through quantizers)."""

    test: str | Path
    n: int = 500
    steps: int = 20
    restarts: int = 2


@dataclass(frozen=True)
class TrainRequest:
    arch: str  # a built-in architecture (deploy-robust info --zoo)
    data: str | Path
    out: str | Path
    options: TrainingOptions  # adv "pgd" (the default) needs an eps
    evaluation: PGDEvaluation | None = None
    init: str | Path | None = None  # start from these weights
    checkpoint: str | Path | None = None  # run state written after every epoch
    resume: bool = False  # continue from `checkpoint` when it exists

    def __post_init__(self) -> None:
        if self.options.epochs < 1:
            raise UserError(f"--epochs must be >= 1; got {self.options.epochs}")


def train(request: TrainRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Train, evaluate and write the model file; the document is what `train --json` prints (rank 0's)."""
    distributed.init_from_env()
    architecture = arch_resolver.resolve(request.arch)
    if architecture.spec is None:
        raise UserError(
            f"--arch {request.arch}: a user architecture needs its input spec; train it with a built-in "
            "name or wrap it in a model file"
        )
    spec, o = architecture.train_spec or architecture.spec, request.options
    perturb = o.perturb()
    data = load_dataset(request.data, spec.shape, split="train")
    seed_everything(o.seed)  # the initial weights come from the seed too
    model = architecture.build(spec.num_classes)
    if request.init:
        model.load_state_dict(load_model(request.init, request.arch).module.state_dict())
        for p in model.parameters():
            p.requires_grad_(True)
    device = distributed.local_device(o.device)
    model.to(device)
    lead = distributed.rank() == 0
    log = log if lead else (lambda message: None)
    log(
        f"training {architecture.name} on {data.name} ({len(data)} images, {o.epochs} epochs, "
        f"adv {o.adv}{'' if o.adv == 'none' else f' eps {o.eps:g}'}, {distributed.world_size()} process(es))"
    )
    started = time.perf_counter()
    losses = train_classifier(
        model, data, epochs=o.epochs, batch_size=o.batch, lr=o.lr, seed=o.seed, input_transform=normalizer(spec),
        augment=o.augment, perturb=perturb, checkpoint=request.checkpoint, resume=request.resume,
        on_epoch=lambda e, loss: log(f"  epoch {e + 1}/{o.epochs}: loss {loss:.4f}"),
    )  # fmt: skip
    model.cpu()
    settings = _training_settings(o, data.name, str(device)) | {
        "seconds": round(time.perf_counter() - started, 1),
        "losses": [round(v, 5) for v in losses],
    }
    report: dict[str, Any] = {"out": str(request.out), "arch": architecture.name, "training": settings}
    if not lead:
        return Result(report, model=model)
    if request.evaluation is not None:
        e = request.evaluation
        test = load_dataset(e.test, spec.shape).take(e.n)
        report["evaluation"] = clean_and_pgd(
            with_normalization(model, spec), test, o.eps or 0.0, steps=e.steps, restarts=e.restarts, seed=o.seed
        )
        settings["evaluation"] = report["evaluation"]
    save_model_file(request.out, model, request.arch, spec, settings)
    return Result(report, [Path(request.out)], model=model)


def _training_settings(o: TrainingOptions, data_name: str, device: str) -> dict[str, Any]:
    return {
        "data": data_name,
        "epochs": o.epochs,
        "batch_per_process": o.batch,
        "processes": distributed.world_size(),
        "lr": o.lr,
        "adv": o.adv,
        "eps": o.eps,
        "steps": o.steps,
        "step_size": o.step_size,
        "augment": o.augment,
        "seed": o.seed,
        "device": device,
    }


def parse_bits(text: str) -> tuple[int, int]:
    """W/A bits, e.g. "4/4" with 2..8 bits each -> (w_bits, a_bits)."""
    match = re.fullmatch(r"(\d)/(\d)", text.strip())
    if not match or not all(2 <= int(b) <= 8 for b in match.groups()):
        raise UserError(f"--bits must be W/A with 2..8 bits each, e.g. 4/4 or 8/8; got {text}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class DefensiveQuantizationRequest:
    model: str | Path  # a state_dict model with a known architecture
    data: str | Path  # training images (also calibrate the activation bounds)
    out: str | Path
    bits: str  # "W/A", e.g. "4/4" (first and last layer weights stay 8-bit)
    beta: float = 3e-4  # Lipschitz regularizer weight (0: plain QAT)
    options: TrainingOptions = TrainingOptions(epochs=5, lr=1e-3, adv="none")  # epochs 0: post-training quantization
    calib_n: int = 512
    input_grid: str = "uint8"  # or "int8" (symmetric; exports to every target)
    test: str | Path | None = None  # clean and PGD accuracy of the original and the DQ model
    eval_n: int = 500
    model_options: ModelOptions = ModelOptions()

    def __post_init__(self) -> None:
        parse_bits(self.bits)
        if self.options.epochs < 0:
            raise UserError(f"--epochs must be >= 0 (0: post-training quantization); got {self.options.epochs}")
        if self.beta < 0:
            raise UserError(f"--beta must be >= 0; got {self.beta}")

    @property
    def kind(self) -> str:
        if self.options.epochs == 0:
            return "post-training quantization"
        return "QAT" if self.beta == 0 else f"DQ beta {self.beta:g}"


def defensive_quantize(
    request: DefensiveQuantizationRequest, log: Callable[[str], None] = lambda message: None
) -> Result:
    """Fine-tune (or calibrate) at W/A bits and write the DQ model file; the document is `dq --json`'s."""
    (w_bits, a_bits), o = parse_bits(request.bits), request.options
    perturb = o.perturb()
    loaded = request.model_options.load(request.model)
    arch = loaded.source.get("arch")
    if arch is None or loaded.source["format"] not in ("state_dict", "trained_model"):
        raise UserError(
            f"{loaded.source['file']}: dq writes a weights-only model file and needs a state_dict model "
            "with a known architecture (--arch, a built-in checkpoint, or a `train` model file)"
        )
    data = load_dataset(request.data, loaded.spec.shape, split="train")
    kind = request.kind
    log(f"{kind} of {loaded.source['file']} at w{w_bits}a{a_bits} on {data.name} ({o.epochs} epochs, adv {o.adv})")
    dq = DQRequest(
        w_bits, a_bits, request.beta, o.epochs, o.lr, o.batch, request.calib_n, perturb, o.seed,
        input_signed=request.input_grid == "int8", device=str(distributed.local_device(o.device)),
    )  # fmt: skip
    started = time.perf_counter()
    module, config, report = defensive_quantization(loaded, data, dq)
    training = {
        "kind": kind, "data": data.name, "bits": f"{w_bits}/{a_bits}", "beta": request.beta, "epochs": o.epochs,
        "lr": o.lr, "batch": o.batch, "adv": o.adv, "eps": o.eps, "steps": o.steps, "seed": o.seed,
        "source": loaded.source["file"], "seconds": round(time.perf_counter() - started, 1),
    } | report  # fmt: skip
    if request.test:
        test = load_dataset(request.test, loaded.spec.shape).take(request.eval_n)
        eps = o.eps or 0.0
        training["evaluation"] = {
            "original": clean_and_pgd(loaded.reference(), test, eps, seed=o.seed),
            "dq": clean_and_pgd(with_normalization(module, loaded.spec), test, eps, seed=o.seed),
        }
    save_model_file(request.out, module, arch, loaded.spec, training, dq=config.to_json())
    document = {"out": str(request.out), "dq": config.to_json(), "training": training}
    return Result(document, [Path(request.out)], model=module)
