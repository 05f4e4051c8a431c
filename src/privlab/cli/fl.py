"""``privlab fl``: federated learning on Flower with user-level DP, secure aggregation and inversion attacks."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from privlab.errors import InvalidParameterError

app = typer.Typer(no_args_is_help=True, help=__doc__)

_FLAGS = {
    "num_clients": "--num-clients", "clients_per_round": "--clients-per-round", "rounds": "--rounds",
    "noise_multiplier": "--noise-multiplier", "target_epsilon": "--target-epsilon", "clip_norm": "--clip-norm",
    "clipping": "--clipping", "noise": "--noise", "partition": "--partition", "alpha": "--alpha",
    "local_epochs": "--local-epochs", "lr": "--lr", "dataset": "--dataset", "model": "--model",
    "secagg": "--secagg", "train_size": "--train-size", "delta": "--delta", "secure_rng": "--secure-rng",
    "client_sampling": "--client-sampling",
}


def _flag_error(exc: InvalidParameterError) -> typer.BadParameter:
    msg = str(exc)
    name = msg.split("'")[1] if msg.startswith("The '") else ""
    return typer.BadParameter(msg.replace(f"'{name}' parameter", f"{_FLAGS.get(name, name)} option", 1))


@app.command("run")
def run_cmd(
    dataset: str = typer.Option("mnist", help="mnist or fashion_mnist"),
    model: str = typer.Option("mlp", help="mlp or cnn"),
    num_clients: int = typer.Option(100),
    clients_per_round: int = typer.Option(10),
    rounds: int = typer.Option(20),
    local_epochs: float = typer.Option(1.0, help="0: FedSGD (one step on one batch)"),
    lr: float = typer.Option(0.1),
    partition: str = typer.Option("iid", help="iid or dirichlet"),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration (non-IID)"),
    train_size: int = typer.Option(60000),
    noise_multiplier: float | None = typer.Option(None, help="user-level DP: z = sigma / C"),
    target_epsilon: float | None = typer.Option(None, help="user-level DP: calibrate z to this epsilon"),
    clip_norm: float = typer.Option(1.0),
    clipping: str = typer.Option("fixed", help="fixed or adaptive (Andrew et al. 2021)"),
    noise: str = typer.Option("central", help="central (server adds noise) or distributed (clients do)"),
    delta: float = typer.Option(1e-5),
    secagg: bool = typer.Option(False, help="aggregate with Flower's SecAgg+"),
    actors: int = typer.Option(2, help="Ray actors (one CPU each)"),
    deploy: bool = typer.Option(
        False, help="run as real processes (a Flower SuperLink, one SuperNode per client, `flwr run`) on 127.0.0.1"
    ),
    round_timeout: float = typer.Option(120.0, help="with --deploy: seconds to wait for a round's replies"),
    seed: int = typer.Option(0, help="Seed for data, training, sampling and noise (not secure; see --secure-rng)."),
    secure_rng: bool = typer.Option(False, help="Draw the DP noise and the client sampling from the OS CSPRNG."),
    client_sampling: str = typer.Option(
        "auto", help="poisson (each client joins with probability m/N; central DP's default), fixed (exactly m), auto"
    ),
    out: Path | None = typer.Option(None, help="write result.json and section.json here"),
) -> None:
    """Run FedAvg (optionally DP-FedAvg, SecAgg+) in Flower's simulation engine (or, with --deploy, as real
    Flower processes on this host); print each round."""
    from privlab.fl import FedConfig, UserDPConfig, run_federated
    from privlab.fl.report import fl_section

    try:
        dp = None
        if noise_multiplier is not None or target_epsilon is not None:
            dp = UserDPConfig(noise_multiplier=noise_multiplier, target_epsilon=target_epsilon, delta=delta,
                              clipping=clipping, clip_norm=clip_norm, noise=noise)
        cfg = FedConfig(dataset=dataset, model=model, num_clients=num_clients, clients_per_round=clients_per_round,
                        rounds=rounds, local_epochs=local_epochs, lr=lr, partition=partition, alpha=alpha,
                        train_size=train_size, secagg=secagg, seed=seed, dp=dp, secure_rng=secure_rng,
                        client_sampling=client_sampling)
    except InvalidParameterError as exc:
        raise _flag_error(exc) from None
    if deploy:
        from privlab.fl.deploy import FlowerDeployment

        if secagg:
            raise typer.BadParameter("--deploy runs plain or DP FedAvg; use the simulation engine for --secagg")
        with FlowerDeployment(cfg, round_timeout=round_timeout) as dep:
            res = dep.run()
    else:
        res = run_federated(cfg, progress=True, num_actors=actors)
    for r in res.published_rounds():  # without per-round times under Poisson sampling (FedResult)
        eps = r["epsilon"]
        eps = "" if eps is None else f"  user-level epsilon {eps:.3f} (delta {delta:g}, {cfg.sampling})"
        took = "" if r["seconds"] is None else f"  {r['seconds']:.1f}s"
        typer.echo(f"round {r['round']:3d}  accuracy {r['accuracy']:.4f}{eps}{took}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(res.to_dict(), indent=2) + "\n")
        (out / "section.json").write_text(json.dumps(fl_section(res).to_dict(), indent=2) + "\n")
        typer.echo(f"wrote {out / 'result.json'} and {out / 'section.json'}")


@app.command("invert")
def invert_cmd(
    method: str = typer.Option("ig", help="dlg (Zhu et al. 2019) or ig (Geiping et al. 2020)"),
    images: int = typer.Option(8, help="number of attacked clients (one image each)"),
    steps: int = typer.Option(200),
    noise_multiplier: float = typer.Option(1.0, help="for the dp defence"),
    secagg_clients: int = typer.Option(10, help="for the secagg defence"),
) -> None:
    """Gradient inversion of batch-1 FedSGD updates on MNIST, without defence, under DP and under SecAgg."""
    import torch

    from privlab.data import load_mnist
    from privlab.fl.inversion import InversionConfig
    from privlab.fl.leakage import DEFENCES, inversion_experiment
    from privlab.models import build_model
    from privlab.train import TrainConfig, train_model

    try:
        cfg = InversionConfig(method=method, steps=steps, lr=1.0 if method == "dlg" else 0.1)
    except InvalidParameterError as exc:
        raise typer.BadParameter(str(exc).replace("'method' parameter", "--method option")) from None
    train, test = load_mnist("train"), load_mnist("test")
    torch.manual_seed(0)
    clf = train_model(build_model("mlp", hidden=(128,)), train.head(5000), TrainConfig(epochs=2, batch_size=64))
    torch.manual_seed(1)
    model = build_model("mlp", hidden=(128,))
    for d in DEFENCES:
        r = inversion_experiment(model, test.head(max(images, secagg_clients)), clf, defence=d, num_targets=images,
                                 cfg=cfg, noise_multiplier=noise_multiplier, secagg_clients=secagg_clients,
                                 mean_image=train.x[:5000].mean(0, keepdim=True))
        typer.echo(f"{d:7s} median PSNR {r.median_psnr:6.1f} dB  recognised {r.recognisability:.2f}  "
                   f"(mean-image guess {r.baseline_psnr_mean_image:.1f} dB)")
