"""Configuration of a synthetic-data experiment: ``synthetic:`` in ``privlab run`` configs, and the
body of ``privlab synth CONFIG.yaml``. What changes the guarantee (``epsilons``, ``delta``) sits
beside what changes only the measurement (sizes, shadow models)."""

from __future__ import annotations

from dataclasses import dataclass, field

from privlab._validation import check_choice, check_int, check_real
from privlab.errors import InvalidParameterError
from privlab.synth.adult import DEFAULT_COLUMNS


def _default_generators() -> tuple[str, ...]:
    return ("aim", "mst", "dpvae", "bayesnet", "copula")


@dataclass(frozen=True)
class SynthRunConfig:
    """Generators x epsilons on Adult, each release evaluated for fidelity, utility and leakage.

    ``shadow_generators`` get the shadow-model attack (``shadow_models`` fits with the target and as
    many without, half of them to train the attack): it refits the generator that many times, so it
    is off by default for AIM and MST (about a minute per fit on 2 cores).

    ``aim_rounds`` is AIM's round budget: its one-way marginals take 0.9 x columns / rounds of rho, so
    it must exceed columns / 0.9 (checked here and in the generator). The default 40 leaves 78% of rho
    to the adaptive rounds on the 10 default columns at about 2.5 minutes per fit on 2 cores; the
    library's own default (16 x columns) spends less on the one-ways but takes several times longer.
    """

    generators: tuple[str, ...] = field(default_factory=_default_generators)
    epsilons: tuple[float, ...] = (1.0,)
    delta: float = 1e-5
    dataset: str = "adult"
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    train_size: int = 1000
    test_size: int = 2000
    label: str = "income"
    secret: str = "sex"
    shadow_models: int = 20
    shadow_generators: tuple[str, ...] = ("bayesnet", "copula", "dpvae")
    aim_rounds: int = 40
    dpvae_epochs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        from privlab.synth.generators import GENERATORS

        owner = "synthetic"
        if not self.generators:
            raise InvalidParameterError("The 'generators' parameter of synthetic must list at least one generator.")
        for g in (*self.generators, *self.shadow_generators):
            check_choice(g, "generators", owner, sorted(GENERATORS))
        if not self.epsilons:
            raise InvalidParameterError("The 'epsilons' parameter of synthetic must list at least one epsilon.")
        for e in self.epsilons:
            check_real(e, "epsilons", owner, low=0.0, low_open=True, allow_inf=True)
        check_real(self.delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
        check_choice(self.dataset, "dataset", owner, ("adult",))
        check_int(self.train_size, "train_size", owner, low=50, high=3750)  # 8 x train_size rows are drawn
        check_int(self.test_size, "test_size", owner, low=50)
        check_int(self.shadow_models, "shadow_models", owner, low=4)
        check_int(self.aim_rounds, "aim_rounds", owner, low=1)
        if self.aim_rounds <= len(self.columns) / 0.9:
            raise InvalidParameterError(
                f"The 'aim_rounds' parameter of synthetic must be greater than {len(self.columns) / 0.9:.1f} "
                f"(= {len(self.columns)} columns / 0.9): AIM's one-way marginals take 0.9 x columns / rounds of rho. "
                f"Got {self.aim_rounds}."
            )
        check_int(self.dpvae_epochs, "dpvae_epochs", owner, low=1)
        check_int(self.seed, "seed", owner, low=0)
        for key in ("label", "secret"):
            check_choice(getattr(self, key), key, owner, self.columns)


@dataclass(frozen=True)
class SynthCommandConfig:
    """The file ``privlab synth CONFIG.yaml`` reads: a run name, an output directory, ``synthetic:``."""

    name: str = "synth"
    output_dir: str = "privlab-runs"
    synthetic: SynthRunConfig = field(default_factory=SynthRunConfig)
