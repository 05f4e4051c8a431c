"""Configuration of a federated run: frozen dataclasses, also the ``federated:`` section of ``privlab run``.

What changes the privacy guarantee (``UserDPConfig``: noise, clipping, delta; and the sampling in
``FedConfig``: ``num_clients``, ``clients_per_round``, ``rounds``) is kept apart from what changes
only utility or speed (model, local epochs, learning rate, evaluation size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from privlab._validation import check_bool, check_choice, check_int, check_real
from privlab.accounting import ACCOUNTANTS
from privlab.errors import InvalidParameterError

CLIPPINGS = ("fixed", "adaptive")
NOISE_PLACEMENTS = ("central", "distributed")
FL_DATASETS = ("mnist", "fashion_mnist", "shakespeare")
FL_MODELS = ("mlp", "cnn", "char")
FL_PARTITIONS = ("iid", "dirichlet", "user")
CLIENT_SAMPLINGS = ("auto", "poisson", "fixed")

# SecAgg+ arithmetic (Flower's SecAggPlusWorkflow): each client's model is clipped to
# [-SECAGG_CLIPPING_RANGE, SECAGG_CLIPPING_RANGE] and quantised to [0, SECAGG_QUANTIZATION_RANGE];
# the masked vectors are summed modulo SECAGG_MODULUS, so the sum of m clients is exact only while
# m * SECAGG_QUANTIZATION_RANGE < SECAGG_MODULUS (m = 1024 at 2^22 levels wraps to garbage).
SECAGG_CLIPPING_RANGE = 8.0
SECAGG_QUANTIZATION_RANGE = 2**22
SECAGG_MODULUS = 2**32
# Fraction of the sampled clients whose shares reconstruct a secret; with distributed DP it is also
# the fewest masked vectors a round may sum (the clients' noise is calibrated to it, see
# privlab.fl.client.distributed_noise_std).
SECAGG_THRESHOLD = 0.5


@dataclass(frozen=True)
class UserDPConfig:
    """User-level DP-FedAvg (McMahan et al. 2018; adaptive clipping: Andrew et al. 2021).

    Each sampled client's model update is clipped to L2 norm ``clip_norm`` (C) and Gaussian noise
    of standard deviation ``z * C`` is added to the sum of updates, which is divided by the number of
    clients per round. ``noise_multiplier`` is z; give ``target_epsilon`` instead to calibrate z for
    the run's rounds against the bound of its client sampling (``FedConfig.sampling``):
    :func:`privlab.accounting.calibrate_noise` at rate q for Poisson, or
    :func:`privlab.accounting.fixed_size.calibrate_fixed_size_noise` for exactly m.

    * ``clipping="fixed"``: C stays ``clip_norm``.
    * ``clipping="adaptive"``: C starts at ``clip_norm`` and follows the ``target_quantile`` of the
      update norms, ``C <- C exp(-clip_lr (b - target_quantile))`` with ``b`` the noisy fraction of
      unclipped updates (count noise ``clipped_count_stddev``, default m/20). z is the noise
      multiplier of the whole round (updates and count together, Andrew et al. Thm. 1).
    * ``noise="central"``: the server clips and adds the noise (Flower's server-side DP wrappers);
      it sees each update in the clear, so it must be trusted.
    * ``noise="distributed"``: every client clips its own update and adds N(0, z^2 C^2 / m); the
      sum carries the same noise, and with secure aggregation the server only ever sees the sum
      (fixed clipping only).
    """

    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    clipping: str = "fixed"
    clip_norm: float = 1.0
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float | None = None
    noise: str = "central"
    accountant: str = "pld"

    def __post_init__(self) -> None:
        owner = "UserDPConfig"
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise InvalidParameterError(
                f"The 'noise_multiplier' parameter of {owner} and 'target_epsilon' are exclusive: give exactly one. "
                f"Got noise_multiplier={self.noise_multiplier}, target_epsilon={self.target_epsilon} instead."
            )
        if self.noise_multiplier is not None:
            check_real(self.noise_multiplier, "noise_multiplier", owner, low=0.0)
        if self.target_epsilon is not None:
            check_real(self.target_epsilon, "target_epsilon", owner, low=0.0, low_open=True)
        check_real(self.delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
        check_choice(self.clipping, "clipping", owner, CLIPPINGS)
        check_real(self.clip_norm, "clip_norm", owner, low=0.0, low_open=True)
        check_real(self.target_quantile, "target_quantile", owner, low=0.0, high=1.0)
        check_real(self.clip_lr, "clip_lr", owner, low=0.0, low_open=True)
        if self.clipped_count_stddev is not None:
            check_real(self.clipped_count_stddev, "clipped_count_stddev", owner, low=0.0, low_open=True)
        check_choice(self.noise, "noise", owner, NOISE_PLACEMENTS)
        check_choice(self.accountant, "accountant", owner, ACCOUNTANTS)
        if self.noise == "distributed" and self.clipping == "adaptive":
            raise InvalidParameterError(
                f"The 'clipping' parameter of {owner} must be 'fixed' with noise='distributed' (clients cannot "
                "agree on an adaptive norm without a trusted server). Got 'adaptive' instead."
            )


@dataclass(frozen=True)
class FedConfig:
    """A FedAvg run on Flower's simulation engine (McMahan et al. 2017).

    ``num_clients`` virtual clients each hold one part of the first ``train_size`` training examples
    (``partition``: "iid" or "dirichlet" with concentration ``alpha``; ``dataset="shakespeare"`` is
    LEAF's next-character task with ``partition="user"``: client i is the i-th largest speaking role,
    holding at most ``train_size // num_clients`` of its windows, and ``model="char"``,
    :mod:`privlab.data.speakers`); each round the server samples
    ``clients_per_round`` of them (exactly, or on average: ``client_sampling``), each runs ``local_epochs`` of plain
    SGD (``lr``, ``batch_size``) from the global model and sends back its model, and the server
    averages them with equal weights. ``local_epochs=0`` is FedSGD-like: one step of one batch.
    ``secagg`` aggregates with Flower's SecAgg+ protocol instead of in the clear (at most
    ``SECAGG_MODULUS / SECAGG_QUANTIZATION_RANGE - 1`` = 1023 clients per round, beyond which the
    modular sum wraps).

    ``client_sampling`` decides who takes part in a round, and so which accountant is exact:

    * ``"poisson"``: every client joins each round independently with probability
      q = ``clients_per_round / num_clients`` (so m clients on average), the clipped updates are
      summed and divided by the expected m, and the noise is added even to a round nobody joined.
      This is the mechanism of McMahan et al. 2018 that the Poisson-subsampled Gaussian accountant
      bounds (add/remove one user). Central noise only.
    * ``"fixed"``: exactly m clients, uniformly without replacement (Flower's own sampling). Its
      exact bound is the fixed-size one (replace one user, :mod:`privlab.accounting.fixed_size`),
      several times larger at the same z. SecAgg+ and distributed noise need it: clients calibrate
      their noise share to a known number of summands.
    * ``"auto"`` (default): ``"poisson"`` with central DP, ``"fixed"`` otherwise (see :attr:`sampling`).

    ``secure_rng`` (same name and meaning as DP-SGD's ``make_private(..., secure_rng=True)``): the DP
    noise and the client sampling come from the OS CSPRNG instead of ``seed``. With the default
    False a run is reproducible and its noise can be regenerated, hence removed, by anyone who knows
    the seed (which the report publishes): seeded runs are for experiments, not for private
    releases (:mod:`privlab.fl.randomness`).
    """

    dataset: str = "mnist"
    model: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    num_clients: int = 100
    clients_per_round: int = 10
    rounds: int = 20
    local_epochs: float = 1.0
    batch_size: int = 32
    lr: float = 0.1
    partition: str = "iid"
    alpha: float = 0.5
    train_size: int = 60000
    eval_size: int = 10000
    secagg: bool = False
    seed: int = 0
    dp: UserDPConfig | None = None
    secure_rng: bool = False
    client_sampling: str = "auto"

    def __post_init__(self) -> None:
        owner = "FedConfig"
        check_choice(self.dataset, "dataset", owner, FL_DATASETS)
        check_choice(self.model, "model", owner, FL_MODELS)
        for h in self.hidden:
            check_int(h, "hidden", owner, low=1)
        n = check_int(self.num_clients, "num_clients", owner, low=2)
        check_int(self.clients_per_round, "clients_per_round", owner, low=2, high=n)
        check_int(self.rounds, "rounds", owner, low=1)
        check_real(self.local_epochs, "local_epochs", owner, low=0.0)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_real(self.lr, "lr", owner, low=0.0, low_open=True)
        check_choice(self.partition, "partition", owner, FL_PARTITIONS)
        check_real(self.alpha, "alpha", owner, low=0.0, low_open=True)
        text = self.dataset == "shakespeare"
        if text != (self.partition == "user") or text != (self.model == "char"):
            raise InvalidParameterError(
                "The 'dataset' parameter of FedConfig is 'shakespeare' exactly when partition='user' (one client "
                "per speaking role) and model='char' (next-character prediction). Got dataset="
                f"{self.dataset!r}, partition={self.partition!r}, model={self.model!r}."
            )
        check_int(self.train_size, "train_size", owner, low=n)
        check_int(self.eval_size, "eval_size", owner, low=1)
        check_int(self.seed, "seed", owner, low=0)
        check_bool(self.secure_rng, "secure_rng", owner)
        if self.secagg and self.clients_per_round * SECAGG_QUANTIZATION_RANGE >= SECAGG_MODULUS:
            most = (SECAGG_MODULUS - 1) // SECAGG_QUANTIZATION_RANGE
            raise InvalidParameterError(
                f"The 'clients_per_round' parameter of {owner} must be an int in the range [2, {most}] with "
                f"secagg=True: SecAgg+ sums {SECAGG_QUANTIZATION_RANGE} quantisation levels per client modulo "
                f"2^{SECAGG_MODULUS.bit_length() - 1}, so more clients wrap the sum. "
                f"Got {self.clients_per_round} instead."
            )
        check_choice(self.client_sampling, "client_sampling", owner, CLIENT_SAMPLINGS)
        if self.client_sampling == "poisson" and (self.dp is None or self.dp.noise != "central"):
            raise InvalidParameterError(
                f"The 'client_sampling' parameter of {owner} can be 'poisson' only with central DP noise: "
                "distributed noise and SecAgg+ calibrate each client's share to a known number of summands, which "
                "Poisson sampling does not fix. Use 'fixed' or 'auto'. Got 'poisson' with "
                f"{'no DP' if self.dp is None else 'noise=' + repr(self.dp.noise)} instead."
            )
        if self.secagg and self.dp is not None and self.dp.noise == "central":
            raise InvalidParameterError(
                "The 'secagg' parameter of FedConfig hides individual updates from the server, so central DP "
                "(server-side clipping) cannot run; use dp.noise='distributed'. Got secagg=True with central noise."
            )

    @property
    def sampling(self) -> str:
        """The client sampling that runs: ``client_sampling``, with "auto" resolved (class doc)."""
        if self.client_sampling != "auto":
            return self.client_sampling
        return "poisson" if self.dp is not None and self.dp.noise == "central" else "fixed"

    @property
    def sample_rate(self) -> float:
        """q = clients per round / total clients."""
        return self.clients_per_round / self.num_clients

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d
