"""The federated-learning section of the privacy report: per-round accuracy and user-level epsilon,
the epsilon curve, and a grid of gradient-inversion reconstructions per defence."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from privlab.attacks import AttackMetrics
from privlab.fl.config import FedConfig
from privlab.fl.leakage import InversionResult
from privlab.fl.simulation import FedResult
from privlab.report.sections import CardRow, Figure, Section, Table, svg_of


def epsilon_figure(result: FedResult) -> str:
    """User-level epsilon (the bound for the run's client sampling) and test accuracy per round, as SVG."""
    rounds = [r.round for r in result.rounds]
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    if result.config.dp is not None:
        eps = [math.nan if r.epsilon is None else r.epsilon for r in result.rounds]
        ax.plot(rounds, eps, "o-", color="tab:red", label="user-level epsilon")
        ax.set_ylabel(f"epsilon (delta={result.config.dp.delta:g})")
    ax.set_xlabel("round")
    ax2 = ax.twinx()
    ax2.plot(rounds, [r.accuracy for r in result.rounds], "s--", color="tab:blue", label="test accuracy")
    ax2.set_ylabel("test accuracy")
    ax.set_title("Per-round privacy and utility")
    fig.legend(loc="lower right", fontsize=8)
    return svg_of(fig)


def reconstruction_grid(results: Sequence[InversionResult], per_row: int = 6) -> str:
    """Originals (top row) and each defence's reconstructions (one row each), as inline SVG."""
    k = min(per_row, len(results[0].truths))
    rows = [("original", results[0].truths[:k], None)] + [
        (f"{r.defence} ({r.method})", r.images[:k], r.psnr[:k]) for r in results
    ]
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k, 1.25 * len(rows)), squeeze=False)
    for i, (name, imgs, ps) in enumerate(rows):
        for j in range(k):
            ax = axes[i][j]
            ax.imshow(imgs[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if ps is not None:
                ax.set_title(f"{ps[j]:.1f} dB", fontsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
    return svg_of(fig)


def inversion_note(cfg: FedConfig) -> str:
    """What the inversion table's "dp" row means for this run's noise placement."""
    dp_row = ("'dp': the update clipped and noised on the client (distributed DP, "
              "privlab.fl.client.clip_and_noise) before the server sees it")
    if cfg.dp is None:
        return f"{dp_row}, at z = 1 (this run had no DP): what client-side noise would leave the server."
    if cfg.dp.noise == "central":
        return (f"This run's noise is central: the server clips and noises updates it has seen in the clear, so the "
                f"'none' row is what this run's server can reconstruct. {dp_row}, at this run's z: what the same "
                "noise placed on the clients would leave it.")
    return f"{dp_row}: what this run's clients send."


def fl_section(
    result: FedResult, inversions: Sequence[InversionResult] = (), subject: AttackMetrics | None = None
) -> Section:
    """The report section of a federated run (and, optionally, the inversion experiments and the
    subject-level membership attack on the final model)."""
    cfg = result.config
    dp = cfg.dp
    sec = Section(
        kind="federated",
        title="Federated learning (Flower)",
        summary=(
            f"FedAvg on {cfg.dataset}, {cfg.num_clients} clients ({cfg.partition} split), {cfg.clients_per_round} "
            f"per round, {cfg.rounds} rounds; aggregation {'SecAgg+' if cfg.secagg else 'in the clear'}; "
            + ("no DP." if dp is None else f"user-level DP-FedAvg ({dp.clipping} clipping, {dp.noise} noise, "
               f"z={result.noise_multiplier:.4g}); "
               + ("noise and client sampling from the OS CSPRNG." if cfg.secure_rng else
                  "noise and client sampling seeded (reproducible, hence not private against anyone who knows "
                  "the seed)."))
        ),
    )
    bound = (
        "Poisson-subsampled Gaussian over users at q = clients per round / clients, add/remove one user "
        "(privlab.accounting, PLD): each client joined each round with probability q"
        if cfg.sampling == "poisson" else
        "exactly m of N clients per round without replacement, replace one user (privlab.accounting.fixed_size, "
        "RDP); the Poisson bound at the same z would be smaller but does not cover this sampling"
    )
    sec.tables.append(
        Table(
            "Rounds",
            ["round", "test accuracy", "user-level epsilon", "clip norm", "s"],
            [[r["round"], r["accuracy"], r["epsilon"], r["clip_norm"], r["seconds"]]
             for r in result.published_rounds()],
            note=f"client sampling: {cfg.sampling}; epsilon: {bound}."
            + (" Per-round times are left out: they grow with the number of clients who joined, which the "
               "Poisson mechanism keeps secret." if cfg.sampling == "poisson" else ""),
        )
    )
    sec.figures.append(Figure("Epsilon and accuracy per round", epsilon_figure(result)))
    if inversions:
        sec.tables.append(
            Table(
                "Gradient inversion (batch of 1, FedSGD update)",
                ["defence", "method", "median PSNR (dB)", "share > 20 dB", "median SSIM", "recognised",
                 "mean-image PSNR (dB)"],
                [
                    [d["defence"], d["method"], d["median_psnr"], d["fraction_psnr_above_20db"], d["median_ssim"],
                     d["recognisability"], d["baseline_psnr_mean_image"]]
                    for d in (r.to_dict() for r in inversions)
                ],
                note=inversion_note(cfg),
            )
        )
        sec.figures.append(Figure("Reconstructions", reconstruction_grid(inversions),
                                  caption="top: the clients' images; below: what each attack recovers"))
    if subject is not None:
        lo, hi = subject.auc_ci
        sec.tables.append(
            Table(
                "Subject-level membership inference (Suri et al. 2022, LOSS over a subject's examples)",
                ["member subjects", "non-member subjects", "AUC", "AUC 95% CI", "TPR @ 10% FPR", "TPR @ 1% FPR"],
                [[subject.n_members, subject.n_nonmembers, subject.auc, f"[{lo:.3f}, {hi:.3f}]",
                  subject.tpr_at_fpr.get(0.1), subject.tpr_at_fpr.get(0.01)]],
                note="members: clients of the federation; non-members: label-matched subjects from data no "
                "client held. AUC 0.5 is chance.",
            )
        )
    eps = result.epsilon
    measured = [f"{r.defence}: {r.median_psnr:.1f} dB" for r in inversions]
    if subject is not None:
        measured.append(f"subject MIA AUC {subject.auc:.3f}")
    sec.card.append(
        CardRow(
            model=f"federated ({cfg.num_clients} clients)",
            claimed="no DP" if eps is None else (f"user-level eps {eps:.3g}" if math.isfinite(eps) else "eps inf"),
            measured="; ".join(measured) or "–",
            utility=f"acc {result.accuracy:.4f}",
            verdict="informational",
        )
    )
    sec.data = {
        "run": result.to_dict(),
        "inversion": [r.to_dict() for r in inversions],
        "subject_mia": None if subject is None else subject.to_dict(),
    }
    return sec
