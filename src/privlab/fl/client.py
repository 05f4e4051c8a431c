"""The client side: each client's data, its local training, and the Flower ``ClientApp``.

A client is identified by Flower's ``partition-id`` (0..num_clients-1). Its data is recomputed
from the config inside the worker that runs it (loaders read a local cache; the split is seeded),
so nothing but the config travels to Ray's actors.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from privlab.data import ArrayDataset, load_dataset
from privlab.dp.noise import derive_seed
from privlab.errors import InvalidParameterError
from privlab.fl.config import SECAGG_THRESHOLD, FedConfig
from privlab.fl.partition import partition, user_partition
from privlab.models import build_model
from privlab.train import TrainConfig, train_model


def build_fl_model(cfg: FedConfig, seed: int | None = None) -> nn.Module:
    """The config's model (``mlp`` with ``hidden``, ``cnn``, or ``char`` for Shakespeare), initialised
    from ``seed`` (default cfg.seed)."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    if cfg.model == "mlp":
        return build_model("mlp", hidden=tuple(cfg.hidden))
    if cfg.model == "char":
        from privlab.data.speakers import VOCAB

        return build_model("char_mlp", vocab=len(VOCAB), seq_len=SPEAKER_SEQ_LEN, hidden=tuple(cfg.hidden))
    return build_model("cnn")


SPEAKER_SEQ_LEN = 40  # characters of context in the Shakespeare task


def fl_test_data(cfg: FedConfig) -> ArrayDataset:
    """What the server evaluates on: the test split's first ``eval_size`` rows; for Shakespeare, a seeded
    sample of ``eval_size`` windows from the held-out part of the clients' roles."""
    if cfg.dataset != "shakespeare":
        return load_dataset(cfg.dataset, "test").head(cfg.eval_size)
    from privlab.data.speakers import load_shakespeare_speakers

    test = load_shakespeare_speakers(cfg.num_clients, seq_len=SPEAKER_SEQ_LEN).test
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.eval_size]
    return test.subset(pick.sort().values)


@lru_cache(maxsize=4)
def _parts(cfg_json: str) -> tuple[ArrayDataset, tuple[torch.Tensor, ...]]:
    cfg = fed_config_from_json(cfg_json)
    if cfg.dataset == "shakespeare":
        from privlab.data.speakers import load_shakespeare_speakers

        corpus = load_shakespeare_speakers(cfg.num_clients, seq_len=SPEAKER_SEQ_LEN)
        cap = cfg.train_size // cfg.num_clients
        return corpus.train, tuple(p[:cap] for p in user_partition(corpus.train_users))
    data = load_dataset(cfg.dataset, "train").head(cfg.train_size)
    return data, tuple(partition(data.y, cfg.num_clients, cfg.partition, cfg.alpha, cfg.seed))


def client_data(cfg: FedConfig, client: int) -> ArrayDataset:
    """Client ``client``'s share of the training data under ``cfg``'s partition (cached per process)."""
    data, parts = _parts(json.dumps(cfg.to_dict(), sort_keys=True))
    return data.subset(parts[client])


def fed_config_from_json(text: str) -> FedConfig:
    """Inverse of ``json.dumps(cfg.to_dict())``."""
    from privlab.fl.config import UserDPConfig

    d: dict[str, Any] = json.loads(text)
    d["hidden"] = tuple(d["hidden"])
    if d.get("dp") is not None:
        d["dp"] = UserDPConfig(**d["dp"])
    return FedConfig(**d)


def local_update(
    model: nn.Module, data: ArrayDataset, cfg: FedConfig, seed: int
) -> dict[str, torch.Tensor]:
    """Train ``model`` in place on ``data`` (FedAvg's local epochs, plain SGD) and return its new state.

    The local loop is :func:`privlab.train.train_model` (no momentum, so each round starts fresh);
    ``local_epochs=0`` takes exactly one step on one batch (FedSGD).
    """
    epochs = cfg.local_epochs if cfg.local_epochs > 0 else min(1.0, cfg.batch_size / len(data)) * 0.999
    tc = TrainConfig(epochs=epochs, batch_size=min(cfg.batch_size, len(data)), lr=cfg.lr, momentum=0.0, seed=seed)
    train_model(model, data, tc)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def clip_and_noise(
    update: dict[str, torch.Tensor],
    clip_norm: float,
    std: float,
    gen: torch.Generator | None,
    *,
    secure: bool = False,
) -> dict[str, torch.Tensor]:
    """``u * min(1, C / ||u||_2) + N(0, std^2 I)``: one client's share of distributed DP noise.

    The noise comes from ``gen``, or from the OS CSPRNG (:func:`privlab.dp.noise.secure_standard_normal`)
    when ``secure`` (``gen`` is then ignored and may be None).
    """
    from privlab.dp.noise import secure_standard_normal

    if not secure and gen is None:
        raise InvalidParameterError("The 'gen' parameter of clip_and_noise must be a torch.Generator unless "
                                    "secure=True. Got None instead.")
    norm = torch.sqrt(sum((u.double() ** 2).sum() for u in update.values()))  # type: ignore[arg-type]
    scale = min(1.0, clip_norm / max(float(norm), 1e-12))

    def noise(u: torch.Tensor) -> torch.Tensor:
        if secure:
            return std * secure_standard_normal(u.shape, dtype=u.dtype)
        return std * torch.randn(u.shape, generator=gen, dtype=u.dtype)

    return {k: u * scale + noise(u) for k, u in update.items()}


def distributed_noise_std(cfg: FedConfig) -> float:
    """Per-coordinate std of each client's share of distributed DP noise: ``z C / sqrt(k)``.

    ``k`` is the fewest clients whose noisy updates a round may sum, so the noise of the sum has std
    at least ``z C`` (the sum of k independent N(0, z^2 C^2 / k)) and the accounted z is a lower bound
    on the realised one. Without SecAgg+ every sampled client must answer (``StrictGrid``), k = m;
    with SecAgg+ a round survives dropouts down to ``k = max(2, ceil(SECAGG_THRESHOLD * m))``
    clients (:func:`secagg_min_summed`; fewer are refused), so every client adds ``sqrt(m / k)``
    times the noise of the no-dropout calibration (about 1.41 x at the default threshold 1/2).
    """
    from privlab.fl.privacy import noise_multiplier_of

    if cfg.dp is None:
        raise InvalidParameterError("The 'dp' parameter of FedConfig is None: the run adds no noise.")
    k = secagg_min_summed(cfg) if cfg.secagg else cfg.clients_per_round
    return noise_multiplier_of(cfg) * cfg.dp.clip_norm / math.sqrt(k)


def secagg_min_summed(cfg: FedConfig) -> int:
    """The fewest masked vectors a SecAgg+ round may sum: ``max(2, ceil(SECAGG_THRESHOLD * m))``."""
    return max(2, math.ceil(SECAGG_THRESHOLD * cfg.clients_per_round))


def train_client(
    cfg: FedConfig, client: int, server_round: int, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """One client's reply in round ``server_round``: its new model, with distributed DP noise if configured.

    With ``cfg.dp.noise == "distributed"`` the update ``w_local - w_global`` is clipped to C and
    N(0, :func:`distributed_noise_std` ^2) is added per coordinate before it leaves the client: from
    the OS CSPRNG with ``cfg.secure_rng``, else from a seed derived from (seed, round, client).
    """
    model = build_fl_model(cfg)
    model.load_state_dict(state)
    new = local_update(model, client_data(cfg, client), cfg, client_seed(cfg, server_round, client))
    dp = cfg.dp
    if dp is None or dp.noise != "distributed":
        return new
    std = distributed_noise_std(cfg)
    gen = None
    if not cfg.secure_rng:
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "noise", server_round, client))
    noisy = clip_and_noise({k: new[k] - state[k] for k in new}, dp.clip_norm, std, gen, secure=cfg.secure_rng)
    return {k: state[k] + noisy[k] for k in new}


def client_seed(cfg: FedConfig, server_round: int, client: int) -> int:
    """The seed of client ``client``'s local training in round ``server_round`` (SHA-256 derived, no collisions)."""
    return derive_seed(cfg.seed, "train", server_round, client)


def make_client_app(cfg: FedConfig | None) -> Any:
    """A Flower ``ClientApp`` whose ``train`` runs :func:`train_client` for the node's ``partition-id``.

    With ``cfg=None`` the config is read at run time from the run config's ``privlab-config`` (a
    JSON string): that is how a deployed app (:mod:`privlab.fl.deploy`) learns it.
    """
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    fixed = None if cfg is None else json.dumps(cfg.to_dict(), sort_keys=True)
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        conf = fed_config_from_json(fixed if fixed is not None else str(context.run_config["privlab-config"]))
        client = int(context.node_config["partition-id"])
        state = msg.content.array_records["arrays"].to_torch_state_dict()
        rnd = int(msg.content.config_records["config"]["server-round"])  # type: ignore[arg-type]
        new = train_client(conf, client, rnd, state)
        content = RecordDict(
            {"arrays": ArrayRecord(new), "metrics": MetricRecord({"weight": 1.0, "client": client})}
        )
        return Message(content=content, reply_to=msg)

    return app
