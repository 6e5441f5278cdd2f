"""GDWS on an ingested model: channel weights (estimated, cached or plain), plan, rewrite, provenance.

Both `deploy-robust gdws` and `deploy-robust export --gdws-*` go through `rewrite_model`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from torch import nn

from deploy_robust.data import Dataset, load_dataset
from deploy_robust.errors import UserError
from deploy_robust.model import LoadedModel
from deploy_robust.model.checkpoint import layer_dtypes
from deploy_robust.model import describe_layers
from deploy_robust.transforms.gdws.alphas import (
    AlphaSettings,
    alpha_info,
    estimate_alphas,
    load_alphas,
    save_alphas,
    weights_hash,
)
from deploy_robust.transforms.gdws.network import CHANNEL_MULTIPLE, GDWSPlan, apply_gdws, find_layers, plan_gdws


@dataclass
class GDWSRequest:
    beta: float | None = None
    budget: float | None = None
    alphas: str | Path | None = None  # cache file: read when present, written after estimating
    alpha_data: Dataset | str | Path | None = None  # images to estimate alphas on (a path or spec is read at the
    # model's shape, training split); none: plain Frobenius error
    alpha_settings: AlphaSettings = AlphaSettings()
    skip: tuple[str, ...] = ()
    include_first: bool = False
    include_pointwise: bool = False
    channel_multiple: int = CHANNEL_MULTIPLE
    allocation: str = "per-layer"  # how a budget is shared (see network.plan_gdws)


def rewrite_model(loaded: LoadedModel, request: GDWSRequest, log=lambda msg: None) -> tuple[LoadedModel, GDWSPlan]:
    """A new LoadedModel whose module has its convolutions rewritten; the input model is left untouched."""
    if (loaded.transforms or {}).get("gdws"):
        raise UserError(
            f"{loaded.source.get('file', 'the model')} is already GDWS-rewritten; rewrite the original "
            "model with the new --beta/--budget instead"
        )
    module = copy.deepcopy(loaded.module)
    shape = loaded.spec.shape
    _, eligible, _ = find_layers(
        module,
        shape,
        skip=list(request.skip),
        include_first=request.include_first,
        include_pointwise=request.include_pointwise,
    )  # the layers alphas are needed for
    alphas, info = _channel_weights(loaded, module, eligible, request, log)
    plan = plan_gdws(
        module,
        shape,
        beta=request.beta,
        budget=request.budget,
        alphas=alphas,
        alpha_info=info,
        skip=list(request.skip),
        include_first=request.include_first,
        include_pointwise=request.include_pointwise,
        channel_multiple=request.channel_multiple,
        allocation=request.allocation,
    )
    return _rewritten(loaded, module, plan), plan


def apply_plan(loaded: LoadedModel, plan: GDWSPlan) -> LoadedModel:
    """A new LoadedModel rewritten as `plan` decides (e.g. `network.chosen_layers`'s per-layer choices); the input
    model is left untouched."""
    return _rewritten(loaded, copy.deepcopy(loaded.module), copy.deepcopy(plan))


def _rewritten(loaded: LoadedModel, module: nn.Module, plan: GDWSPlan) -> LoadedModel:
    apply_gdws(module, plan)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    dtypes = layer_dtypes(dict(module.state_dict()))
    transforms = dict(loaded.transforms or {}) | {"gdws": plan.to_json()}
    return replace(loaded, module=module, layers=describe_layers(module, dtypes), transforms=transforms)


def _channel_weights(loaded: LoadedModel, module: nn.Module, convs: dict[str, nn.Conv2d], request: GDWSRequest, log):
    digest = weights_hash(convs)
    cache = Path(request.alphas) if request.alphas else None
    if cache is not None and cache.exists():
        alphas, info = load_alphas(cache, digest)
        log(f"gdws: channel weights from {cache}")
        return alphas, info
    if request.alpha_data is None:
        if cache is not None:
            raise UserError(f"--alphas {cache} does not exist: pass --alpha-data to estimate and write it")
        return None, None
    settings = request.alpha_settings
    data = request.alpha_data
    if not isinstance(data, Dataset):
        try:
            data = load_dataset(data, loaded.spec.shape, split="train")
        except UserError as e:
            raise UserError(f"--alpha-data: {e}") from None
    log(
        f"gdws: estimating channel weights on {settings.n} PGD points of {data.name} "
        f"({settings.norm} eps {settings.eps:.4g}, {settings.steps} steps)"
    )
    classifier = replace(loaded, module=module).reference()
    alphas = estimate_alphas(classifier, convs, data, settings)
    if cache is not None:
        save_alphas(cache, alphas, settings, digest, data.name)
    return alphas, alpha_info(asdict(settings), data.name, cache.name if cache else None)
