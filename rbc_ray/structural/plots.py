"""PNG plots of an SRL run (matplotlib, Agg backend): convergence, prices, distribution, policy, IRF."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..results.io import atomic_path  # noqa: E402


def _save(fig, out_dir: str, name: str) -> str:
    p = os.path.join(out_dir, name)
    fig.tight_layout()
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return p


def convergence(result: Any, out_dir: str) -> str:
    log = result.log
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].semilogy(log.epoch, log.dtheta_q999)
    ax[0].axhline(result.calibration.e_converge, ls="--", c="k", lw=0.8)
    ax[0].set(xlabel="epoch", ylabel="0.999-quantile |dtheta|")
    ax[1].plot(log.epoch, log.price)
    ax[1].set(xlabel="epoch", ylabel="mean price (r, or w for HANK)")
    return _save(fig, out_dir, "convergence.png")


def price_path(result: Any, out_dir: str, n_show: int = 5) -> str:
    keys = [k for k in ("r", "w", "pi", "K") if k in result.paths]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(result.paths[k][:, :n_show].double().numpy())
        ax.set(xlabel="t", title=k)
    return _save(fig, out_dir, "price_path.png")


def distribution(result: Any, out_dir: str) -> str:
    m = result.solver
    g = result.state["g"].double().mean(0).cpu().view(m.cal.n_b, -1)
    b = m.b_grid.double().cpu()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i in range(g.shape[1]):
        ax.plot(b.numpy(), g[:, i].numpy(), label=f"y{i}")
    ax.set(xlabel="assets b", ylabel="mass", xlim=(float(b[0]), float(b[min(len(b) - 1, int(0.8 * len(b)))])))
    ax.legend()
    return _save(fig, out_dir, "distribution.png")


@torch.no_grad()
def policy(result: Any, out_dir: str) -> str:
    """Consumption at the cleared prices of the first simulated path's last period, by income."""
    m = result.solver
    st = {k: v[:1] for k, v in result.state.items()}
    err, _ = m.euler_errors(st, n_paths=1) if hasattr(m, "euler_errors") else (None, None)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    b = m.b_grid.double().cpu()
    if hasattr(m, "equilibrium"):
        sh, ht = m.tables()
        c = m.equilibrium(sh, ht, m.Pi, st["g"], st["s"])["c"]
    else:  # Huggett, Krusell-Smith: at the state's prices (and lagged prices)
        c = m.consumption(st)
    c = c[0].double().cpu().view(m.cal.n_b, -1)
    for i in range(c.shape[1]):
        ax.plot(b.numpy(), c[:, i].numpy(), label=f"y{i}")
    ax.set(xlabel="assets b", ylabel="consumption c", xlim=(float(b[0]), float(b[int(0.7 * len(b))])))
    ax.legend()
    return _save(fig, out_dir, "policy.png")


def irf(responses: dict[str, torch.Tensor], out_dir: str) -> str | None:
    keys = [k for k in ("r", "C", "Y", "K", "w", "pi", "B") if k in responses]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 2.8), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(responses[k].numpy())
        ax.axhline(0, c="k", lw=0.6)
        ax.set(xlabel="t", title=f"GIRF {k}")
    return _save(fig, out_dir, "irf.png")


def all_plots(result: Any, responses: dict[str, torch.Tensor], out_dir: str) -> dict[str, str]:
    out = {"convergence.png": convergence(result, out_dir), "price_path.png": price_path(result, out_dir),
           "distribution.png": distribution(result, out_dir), "policy.png": policy(result, out_dir)}
    p = irf(responses, out_dir)
    if p:
        out["irf.png"] = p
    return out
