"""Train the diabetes regressor: `python train.py --epochs 300 --lr 0.01`, run by the pipeline's train step.

A plain script: it reads the step's input dataset through the step helper, reports its
validation RMSE as it goes, and saves the module (flavour torch) with the signature of the data.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from model import Regressor

from aifactory.line import step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y = step.dataset("dataset")
    order = np.random.default_rng(args.seed).permutation(len(y))
    cut = len(y) // 10  # a tenth held back to report validation RMSE
    xt, yt = torch.from_numpy(x[order[cut:]]), torch.from_numpy(y[order[cut:]]).float().reshape(-1, 1)
    xv, yv = torch.from_numpy(x[order[:cut]]), torch.from_numpy(y[order[:cut]]).float().reshape(-1, 1)
    model = Regressor(x.shape[1], args.hidden)
    model.fit_scaling(xt, yt)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        loss = torch.nn.functional.mse_loss(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 50 == 0 or epoch == args.epochs:
            model.eval()
            with torch.no_grad():
                val = float(torch.sqrt(torch.nn.functional.mse_loss(model(xv), yv)))
            step.metric(epoch=epoch, loss=float(loss), val_rmse=val)
    step.save_model(
        model.eval(), signature=step.signature("dataset"), init={"features": x.shape[1], "hidden": args.hidden}
    )


if __name__ == "__main__":
    main()
