"""How much of a client's data its update gives away, with and without each defence.

:func:`inversion_experiment` takes ``num_targets`` MNIST-style images, forms the update the server
would observe from a client holding one of them (a FedSGD gradient of one example), applies a
defence, and inverts it with :mod:`privlab.fl.inversion`:

* ``"none"``: the plain update;
* ``"dp"``: the client's distributed-DP step (:func:`privlab.fl.client.clip_and_noise`): clipped
  to ``clip_norm`` and N(0, (z C)^2 / m) noise per coordinate added before it leaves the client;
* ``"secagg"``: the server only learns the sum of ``secagg_clients`` clients' updates (what
  SecAgg+ reveals, see :mod:`privlab.fl.secagg`).

Every score is against the attacked client's own example; ``best_match_psnr`` is also given, the
PSNR against whichever of the mixed-in examples the reconstruction resembles most (under
SecAgg the reconstruction can still look like *some* participant, just not attributably).

Quality is measured by PSNR and SSIM (torchmetrics; Wang et al. 2004 for SSIM) and by a
recognisability proxy: the accuracy of an independently trained classifier on the reconstructions
(the seed paper on image-similarity metrics found PSNR/SSIM can disagree with human judgement,
hence the third measure). The noise level is what a trivial guess scores: the dataset's mean
image, and uniform noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab._validation import check_choice, check_int, check_real
from privlab.data import ArrayDataset
from privlab.fl.client import clip_and_noise
from privlab.fl.inversion import InversionConfig, invert_gradient, model_gradient

DEFENCES = ("none", "dp", "secagg")


def _metrics() -> tuple[Any, Any]:
    try:
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Reconstruction quality needs torchmetrics: pip install 'privlab[fl]'") from exc
    return peak_signal_noise_ratio, structural_similarity_index_measure


def psnr(recon: torch.Tensor, truth: torch.Tensor) -> float:
    """PSNR in dB of a (1, C, H, W) reconstruction against the truth, pixels in [0, 1]: 10 log10(1 / MSE)."""
    f, _ = _metrics()
    return float(f(recon, truth, data_range=1.0))


def ssim(recon: torch.Tensor, truth: torch.Tensor) -> float:
    """SSIM (Gaussian window 11, sigma 1.5) of a (1, C, H, W) reconstruction, pixels in [0, 1]."""
    _, f = _metrics()
    return float(f(recon, truth, data_range=1.0))


@dataclass(frozen=True)
class InversionResult:
    """One defence's reconstructions: per-target PSNR, SSIM, classifier correctness (all against the
    attacked client's example), the best-match PSNR over the examples mixed into the update, the images."""

    defence: str
    method: str
    psnr: tuple[float, ...]
    ssim: tuple[float, ...]
    recognised: tuple[bool, ...]
    best_match_psnr: tuple[float, ...]
    baseline_psnr_mean_image: float
    baseline_psnr_noise: float
    images: torch.Tensor = field(repr=False, compare=False)  # (T, C, H, W) reconstructions
    truths: torch.Tensor = field(repr=False, compare=False)  # (T, C, H, W) the attacked examples

    @property
    def median_psnr(self) -> float:
        return float(np.median(self.psnr))

    @property
    def recognisability(self) -> float:
        return float(np.mean(self.recognised))

    def to_dict(self) -> dict[str, Any]:
        return {
            "defence": self.defence,
            "method": self.method,
            "psnr": list(self.psnr),
            "ssim": list(self.ssim),
            "median_psnr": self.median_psnr,
            "median_ssim": float(np.median(self.ssim)),
            "fraction_psnr_above_20db": float(np.mean(np.asarray(self.psnr) > 20.0)),
            "recognisability": self.recognisability,
            "best_match_psnr": list(self.best_match_psnr),
            "median_best_match_psnr": float(np.median(self.best_match_psnr)),
            "baseline_psnr_mean_image": self.baseline_psnr_mean_image,
            "baseline_psnr_noise": self.baseline_psnr_noise,
        }


def observed_update(
    model: nn.Module,
    data: ArrayDataset,
    target: int,
    defence: str,
    *,
    noise_multiplier: float = 1.0,
    clip_norm: float = 1.0,
    clients_per_round: int = 10,
    secagg_clients: int = 10,
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[int]]:
    """What the server sees from the client holding example ``target``, and which examples it mixes."""
    check_choice(defence, "defence", "observed_update", DEFENCES)
    g = model_gradient(model, data.x[target : target + 1], data.y[target : target + 1])
    if defence == "none":
        return g, [target]
    if defence == "dp":
        named = {str(i): t for i, t in enumerate(g)}
        std = noise_multiplier * clip_norm / clients_per_round**0.5
        noisy = clip_and_noise(named, clip_norm, std, torch.Generator().manual_seed(seed))
        return [noisy[str(i)] for i in range(len(g))], [target]
    k = check_int(secagg_clients, "secagg_clients", "observed_update", low=2, high=len(data))
    others = [j for j in np.random.default_rng(seed).permutation(len(data)).tolist() if j != target][: k - 1]
    total = [t.clone() for t in g]
    for j in others:
        for acc, t in zip(total, model_gradient(model, data.x[j : j + 1], data.y[j : j + 1]), strict=True):
            acc += t
    return total, [target, *others]


def inversion_experiment(
    model: nn.Module,
    data: ArrayDataset,
    classifier: nn.Module,
    *,
    defence: str = "none",
    num_targets: int = 8,
    cfg: InversionConfig | None = None,
    noise_multiplier: float = 1.0,
    clip_norm: float = 1.0,
    clients_per_round: int = 10,
    secagg_clients: int = 10,
    mean_image: torch.Tensor | None = None,
) -> InversionResult:
    """Invert the observed update of each of the first ``num_targets`` examples of ``data`` under ``defence``."""
    check_choice(defence, "defence", "inversion_experiment", DEFENCES)
    t = check_int(num_targets, "num_targets", "inversion_experiment", low=1, high=len(data))
    check_real(noise_multiplier, "noise_multiplier", "inversion_experiment", low=0.0)
    cfg = cfg or InversionConfig()
    shape = tuple(data.x.shape[1:])
    mean = data.x.mean(0, keepdim=True) if mean_image is None else mean_image
    noise = torch.rand((1, *shape), generator=torch.Generator().manual_seed(cfg.seed))
    ps, ss, rec, best, imgs, truths, base_mean, base_noise = [], [], [], [], [], [], [], []
    classifier.eval()
    for i in range(t):
        grads, mixed = observed_update(
            model, data, i, defence, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
            clients_per_round=clients_per_round, secagg_clients=secagg_clients, seed=cfg.seed + i,
        )
        x_hat = invert_gradient(model, grads, shape, cfg)
        truth = data.x[i : i + 1]
        ps.append(psnr(x_hat, truth))
        best.append(max(psnr(x_hat, data.x[j : j + 1]) for j in mixed))
        ss.append(ssim(x_hat, truth))
        with torch.no_grad():
            rec.append(bool(classifier(x_hat).argmax(1).item() == int(data.y[i])))
        base_mean.append(psnr(mean.clamp(0, 1), truth))
        base_noise.append(psnr(noise, truth))
        imgs.append(x_hat[0])
        truths.append(truth[0])
    return InversionResult(
        defence, cfg.method, tuple(ps), tuple(ss), tuple(rec), tuple(best), float(np.median(base_mean)),
        float(np.median(base_noise)), torch.stack(imgs), torch.stack(truths),
    )
