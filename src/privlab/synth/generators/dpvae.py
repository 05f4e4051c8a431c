"""A small variational autoencoder trained with DP-SGD through :func:`privlab.dp.make_private`.

Rows are one-hot encoded per column; the encoder maps a row to ``(mu, log sigma^2)`` of a latent
Gaussian, the decoder maps a latent to per-column logits. The per-example loss is the negative
ELBO (Kingma & Welling 2014): ``sum_j CE(logits_j, x_j) + KL(N(mu, sigma^2) || N(0, I))``. The
reparameterisation noise is an input of the module (concatenated to the row), so the forward pass
is deterministic per example and per-example gradients are exact. Training is DP-SGD (Abadi et al.
2016) with Poisson sampling, so the guarantee and ledger are DP-SGD's: (epsilon, delta)-DP under
add/remove-one of a row. Sampling decodes ``z ~ N(0, I)`` and draws each column from its softmax.
``epsilon = inf`` trains the same model without clipping or noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting import ACCOUNTANTS
from privlab.dp import make_private
from privlab.synth.generators.base import FittedGenerator, Generator, register
from privlab.synth.table import Table


class TabularVAE(nn.Module):
    """Input ``[one-hot row | latent noise]``; output ``[logits | mu | logvar]``."""

    def __init__(self, sizes: tuple[int, ...], latent: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.sizes, self.latent, self.width = sizes, latent, sum(sizes)
        self.encoder = nn.Sequential(nn.Linear(self.width, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, self.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row, noise = x[:, : self.width], x[:, self.width :]
        stats = self.encoder(row)
        mu, logvar = stats[:, : self.latent], stats[:, self.latent :].clamp(-8, 8)
        z = mu + noise * torch.exp(0.5 * logvar)
        return torch.cat([self.decoder(z), mu, logvar], dim=1)

    def loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the per-example negative ELBO."""
        logits, mu, logvar = out[:, : self.width], out[:, self.width : self.width + self.latent], out[:, -self.latent :]
        nll = torch.zeros(len(x))
        start = 0
        for s in self.sizes:
            target = x[:, start : start + s].argmax(dim=1)
            nll = nll + nn.functional.cross_entropy(logits[:, start : start + s], target, reduction="none")
            start += s
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (nll + kl).mean()


class _FittedVAE(FittedGenerator):
    name = "dpvae"

    def __init__(self, table: Table, epsilon: float, delta: float, ledger: object, model: TabularVAE) -> None:
        super().__init__(table, epsilon, delta, ledger)  # type: ignore[arg-type]
        self.model = model.eval()

    def _sample(self, n: int, seed: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            logits = self.model.decoder(torch.randn(n, self.model.latent, generator=gen))
        cols, start = [], 0
        for s in self.model.sizes:
            p = torch.softmax(logits[:, start : start + s], dim=1)
            cols.append(torch.multinomial(p, 1, generator=gen).squeeze(1))
            start += s
        return torch.stack(cols, dim=1).numpy()


@register
class DPVAE(Generator):
    """DP-SGD-trained tabular VAE (Adam, Poisson batches of expected size ``batch_size``); ``accountant``
    calibrates the noise ("pld", the default and tightest, or "rdp", faster to calibrate)."""

    name = "dpvae"

    def __init__(
        self,
        epochs: int = 10,
        batch_size: int = 128,
        lr: float = 2e-3,
        max_grad_norm: float = 1.0,
        latent: int = 8,
        hidden: int = 64,
        accountant: str = "pld",
        progress: bool = False,
    ) -> None:
        self.epochs = check_int(epochs, "epochs", "DPVAE", low=1)
        self.batch_size = check_int(batch_size, "batch_size", "DPVAE", low=1)
        self.lr = check_real(lr, "lr", "DPVAE", low=0.0, low_open=True)
        self.max_grad_norm = check_real(max_grad_norm, "max_grad_norm", "DPVAE", low=0.0, low_open=True)
        self.latent = check_int(latent, "latent", "DPVAE", low=1)
        self.hidden = check_int(hidden, "hidden", "DPVAE", low=1)
        self.accountant = check_choice(accountant, "accountant", "DPVAE", ACCOUNTANTS)
        self.progress = progress

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        torch.manual_seed(seed)
        model = TabularVAE(table.domain.sizes, self.latent, self.hidden)
        x = torch.from_numpy(table.onehot())
        loader = DataLoader(TensorDataset(x), batch_size=min(self.batch_size, len(table)), shuffle=True)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        ledger = None
        batches: Any = loader
        step_model: nn.Module = model
        step_opt: Any = opt
        steps = self.epochs * len(loader)
        if not math.isinf(epsilon):
            pt = make_private(
                model,
                opt,
                loader,
                target_epsilon=epsilon,
                delta=delta,
                epochs=self.epochs,
                max_grad_norm=self.max_grad_norm,
                seed=seed,
                accountant=self.accountant,
            )
            batches, step_model, step_opt, steps = pt.data_loader, pt.model, pt.optimizer, pt.steps
            ledger = pt.accountant.ledger
        noise_gen = torch.Generator().manual_seed(seed + 1)
        bar = tqdm(total=steps, desc="dpvae", disable=not self.progress, leave=False)
        done = 0
        while done < steps:
            for (xb,) in batches:
                noise = torch.randn(len(xb), self.latent, generator=noise_gen)
                step_opt.zero_grad()
                inp = torch.cat([xb, noise], dim=1)
                model.loss(step_model(inp), xb).backward()
                step_opt.step()
                done += 1
                bar.update(1)
                if done >= steps:
                    break
        bar.close()
        return _FittedVAE(table, epsilon, delta, ledger, model)
