"""gdws, ensemble and info: model files made from model files, and what a bundle or model file holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from deploy_robust.api.common import ModelOptions, Result
from deploy_robust.bundle import is_bundle, open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.defenses.empir import CHECKPOINT_KEY, SHAPES, build_ensemble, describe, parse_member
from deploy_robust.errors import UserError
from deploy_robust.evaluate import evaluate
from deploy_robust.export import onnx_summary
from deploy_robust.ingest import LoadedModel
from deploy_robust.model import PickOutput
from deploy_robust.model.arch import is_code
from deploy_robust.model.checkpoint import extract_state_dict, read_checkpoint
from deploy_robust.model.model_file import portable_arch
from deploy_robust.runtimes.torch_runner import TorchRunner
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier
from deploy_robust.transforms.gdws.checkpoint import save_gdws_checkpoint
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model


@dataclass(frozen=True)
class GDWSModelRequest:
    model: str | Path
    gdws: GDWSRequest  # the error budget and how it is spent
    out: str | Path | None = None  # the GDWS checkpoint to write; None: the plan only
    test: str | Path | None = None  # clean accuracy of the original and the GDWS model
    model_options: ModelOptions = ModelOptions()


def gdws(request: GDWSModelRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Rewrite the model's convolutions as GDWS; the document is `gdws --json`'s, the plan in `gdws_plan`."""
    loaded = request.model_options.load(request.model)
    rewritten, plan = rewrite_model(loaded, request.gdws, log)
    report: dict[str, Any] = {"model": str(request.model), "plan": plan.to_json()}
    if request.test:
        test = load_dataset(request.test, loaded.spec.shape)
        report["clean_accuracy"] = {
            name: evaluate(TorchRunner(m.reference()), test).accuracy
            for name, m in (("original", loaded), ("gdws", rewritten))
        }
    written = []
    if request.out:
        arch = _arch_to_record(request.model_options.arch, loaded)
        save_gdws_checkpoint(request.out, rewritten.module, arch, loaded.spec, plan)
        report["out"] = str(request.out)
        written.append(Path(request.out))
    return Result(report, written, gdws_plan=plan, model=rewritten.module)


def _arch_to_record(arch: str | None, loaded: LoadedModel) -> str | None:
    """The architecture a GDWS checkpoint is rebuilt from: a user file by its absolute path (so the
    checkpoint loads from any directory), a built-in one by name."""
    return portable_arch(arch) if arch and is_code(arch) else loaded.source["arch"]


@dataclass(frozen=True)
class EnsembleRequest:
    """An EMPIR ensemble: members given as "fp32" or "wXaY" (DoReFa bits), each optionally ":member.pt"."""

    members: tuple[str, ...]
    arch: str  # member architecture (inputs in [0, 1])
    out: str | Path
    data: str | Path | None = None  # training images for members without a checkpoint
    test: str | Path | None = None  # each member's and the ensemble's accuracy
    epochs: int = 10
    combine: str = "vote"  # majority vote (the fp32 member breaks ties) or "average" probabilities
    seed: int = 0

    def __post_init__(self) -> None:
        parsed = [parse_member(text) for text in self.members]
        if len(parsed) < 2:
            raise UserError("an ensemble needs at least two --member")
        if self.combine == "vote" and sum(m["w_bits"] is None for m in parsed) != 1:
            raise UserError("--combine vote needs exactly one fp32 member (it breaks ties)")


def ensemble(request: EnsembleRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Train (or load) the members and write the ensemble checkpoint; the document is `ensemble --json`'s."""
    members = [parse_member(text) for text in request.members]
    config = {
        "arch": request.arch,
        "members": [{k: m[k] for k in ("w_bits", "a_bits")} for m in members],
        "combine": request.combine,
        "num_classes": 10,
        "shape": list(SHAPES[request.arch]),
    }
    seed_everything(request.seed)
    model = build_ensemble(config)
    train = None
    for index, (spec, text, net) in enumerate(zip(members, request.members, model.members)):
        if spec["checkpoint"]:
            net.load_state_dict(extract_state_dict(read_checkpoint(spec["checkpoint"]), spec["checkpoint"]))
            continue
        if train is None:
            if not request.data:
                raise UserError(f"--member {text} has no checkpoint: pass --data to train it")
            train = load_dataset(request.data, SHAPES[request.arch], split="train")
        name = text.split(":")[0]
        log(f"training member {index} ({name}) on {train.name} ({len(train)} images, {request.epochs} epochs)")
        train_classifier(net, train, epochs=request.epochs, seed=request.seed + index)
    model.eval()
    report: dict[str, Any] = {"out": str(request.out), "defense": describe(config)}
    if request.test:
        test = load_dataset(request.test, SHAPES[request.arch])
        report["accuracy"] = {
            text.split(":")[0] + f" (member {i})": evaluate(TorchRunner(net), test).accuracy
            for i, (text, net) in enumerate(zip(request.members, model.members))
        }
        voted = PickOutput(model, 0) if request.combine == "vote" else model
        report["accuracy"]["ensemble"] = evaluate(TorchRunner(voted), test).accuracy
    torch.save({CHECKPOINT_KEY: config, "state_dict": model.state_dict()}, request.out)
    return Result(report, [Path(request.out)], model=model)


@dataclass(frozen=True)
class InfoRequest:
    target: str | Path  # a bundle directory or a model file
    model_options: ModelOptions = ModelOptions()


def info(request: InfoRequest) -> Result:
    """What a bundle holds (its manifest and graph), or a model file (source, input, layers, transforms)."""
    path = Path(request.target)
    if is_bundle(path):
        bundle = open_bundle(path)
        doc = {"bundle": str(path), "manifest": bundle.manifest.to_json(), "graph": onnx_summary(bundle.model_path),
               "runs": [p.name for p in bundle.runs()]}  # fmt: skip
        return Result(doc, bundle=bundle)
    if path.is_dir():
        raise UserError(f"{path} is a folder but not a bundle: it has no manifest.json (export writes one)")
    loaded = request.model_options.load(path)
    doc = {
        "model": str(path),
        "source": loaded.source,
        "input": loaded.spec.to_json(),
        "parameters": sum(p.numel() for p in loaded.module.parameters()),
        "layers": loaded.layers,
        "batch": loaded.fixed_batch or "dynamic",
        "transforms": loaded.transforms,
    }
    return Result(doc)
