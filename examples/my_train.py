"""An ordinary Accelerate training script that reports to accel-run (examples/my-script.yaml runs it).

It runs alone too (`accelerate launch examples/my_train.py --epochs 2`): outside accel-run every
runner.track call does nothing. The four track lines are all accel-run needs.
"""

import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from runner import track


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a small MLP on a learnable synthetic task.")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()

    accelerator = Accelerator()
    torch.manual_seed(0)  # the same data and initial weights in every process
    inputs = torch.randn(args.samples + 2048, 32)
    labels = (inputs @ torch.randn(32, 4)).argmax(dim=1)  # a fixed random teacher: learnable labels
    train = TensorDataset(inputs[: args.samples], labels[: args.samples])
    held_out = TensorDataset(inputs[args.samples :], labels[args.samples :])
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    eval_loader = DataLoader(held_out, batch_size=512)
    model, optimizer, loader, eval_loader = accelerator.prepare(model, optimizer, loader, eval_loader)

    track.setup(accelerator, model)  # world size, precision, device, compute dtype: checked against the spec
    for _ in range(args.epochs):
        seen = 0
        for x, y in loader:
            with accelerator.accumulate(model):
                loss = F.cross_entropy(model(x), y)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            seen += len(x)
            if accelerator.sync_gradients:  # an optimizer step ended: its samples (this process) and loss
                track.step(samples=seen, loss=loss)
                seen = 0

    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in eval_loader:
            logits, y = accelerator.gather_for_metrics((model(x).float(), y))
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
    track.evaluate(eval_loss=total_loss / count, accuracy=correct / count)
    accelerator.print(f"eval loss {total_loss / count:.4f}, accuracy {correct / count:.3f}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
