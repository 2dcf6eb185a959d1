"""The seed's train_simple as a person writes it by hand: DataLoader over a TensorDataset, AdamW with
its defaults, a cosine schedule, Accelerator.prepare. benchmarks/worker_speed.py launches it with
`accelerate launch` beside accel-run's built-in worker, on the same workload.

usage: accelerate launch ... handwritten_train.py SAMPLES FEATURES HIDDEN,HIDDEN CLASSES BATCH STEPS WARMUP
Prints one JSON line: {"samples_per_s": ..., "steps": ..., "timed_s": ...}
"""

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    samples, features, hidden, classes, batch, steps, warmup = sys.argv[1:8]
    samples, features, classes, batch, steps, warmup = map(int, (samples, features, classes, batch, steps, warmup))
    widths = [features, *map(int, hidden.split(",")), classes]
    torch.manual_seed(0)
    dataset = TensorDataset(torch.randn(samples, features), torch.randint(0, classes, (samples,)))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    accelerator = Accelerator()
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    step, start = 0, time.perf_counter()
    while step < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step == warmup:
                start = time.perf_counter()
            if step == steps:
                break
    elapsed = time.perf_counter() - start
    if accelerator.is_main_process:
        rate = (steps - warmup) * batch * accelerator.num_processes / elapsed
        print(json.dumps({"samples_per_s": rate, "steps": steps, "timed_s": elapsed}))


if __name__ == "__main__":
    main()
