"""The same meta-step in PyTorch, written the way the sparse-MAML reference (torchmeta) does it.

Optional: used by meta_step.py --torch_reference when PyTorch is installed, so the speed
ratio against the reference implementation is measured on the same machine, in the same run.
Functional Conv4 (conv 3x3 + bias, batch-statistics BatchNorm, ReLU, max-pool 2, linear
head), autograd.grad(create_graph=second_order) in the inner loop, a Python loop over the
tasks of the meta-batch (as the reference does), Adam on theta and on the masks.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F


def conv4_params(channels_in, ways, hw, channels=64, blocks=4):
    params = []
    c = channels_in
    for _ in range(blocks):
        w = torch.empty(channels, c, 3, 3)
        torch.nn.init.xavier_uniform_(w)
        params += [w, torch.zeros(channels), torch.ones(channels), torch.zeros(channels)]
        c = channels
        hw = hw // 2
    head = torch.empty(ways, channels * hw * hw)
    torch.nn.init.xavier_uniform_(head)
    params += [head, torch.zeros(ways)]
    return [p.requires_grad_() for p in params]


def conv4_forward(params, x, blocks=4):
    for i in range(blocks):
        w, b, gamma, beta = params[4 * i:4 * i + 4]
        x = F.conv2d(x, w, b, padding=1)
        x = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), params[-2], params[-1])


class StraightThroughSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, m):
        return torch.where(m >= 0, torch.ones_like(m), -torch.ones_like(m))

    @staticmethod
    def backward(ctx, grad):
        return grad


def meta_step(params, masks, optimizers, batch, alpha, steps, second_order):
    for opt in optimizers:
        opt.zero_grad()
    total = 0.0
    for t in range(batch["support_x"].shape[0]):  # the reference's loop over tasks
        fast = list(params)
        for _ in range(steps):
            loss = F.cross_entropy(conv4_forward(fast, batch["support_x"][t]), batch["support_y"][t])
            grads = torch.autograd.grad(loss, fast, create_graph=second_order)
            if masks is None:
                fast = [p - alpha * g for p, g in zip(fast, grads)]
            else:
                fast = [p - alpha * 0.5 * (StraightThroughSign.apply(m) + 1) * g
                        for p, m, g in zip(fast, masks, grads)]
        query_loss = F.cross_entropy(conv4_forward(fast, batch["query_x"][t]), batch["query_y"][t])
        query_loss.backward()  # sums the task gradients into .grad (outer loss summed)
        total += float(query_loss)
    for opt in optimizers:
        opt.step()
    return total


def time_meta_step(spec, repeats, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    h, w, c = spec["image"]
    ways, shots, queries, b = spec["ways"], spec["shots"], spec["queries"], spec["meta_batch"]
    rng = np.random.default_rng(0)
    batch = {
        "support_x": torch.tensor(rng.normal(size=(b, ways * shots, c, h, w)), dtype=torch.float32),
        "support_y": torch.tensor(np.tile(np.repeat(np.arange(ways), shots), (b, 1))),
        "query_x": torch.tensor(rng.normal(size=(b, ways * queries, c, h, w)), dtype=torch.float32),
        "query_y": torch.tensor(np.tile(np.repeat(np.arange(ways), queries), (b, 1))),
    }
    params = conv4_params(c, ways, h)
    optimizers = [torch.optim.Adam(params, 1e-3)]
    masks = None
    if spec["masked"]:
        masks = [(torch.rand_like(p) - 0.5).requires_grad_() for p in params]
        optimizers.append(torch.optim.Adam(masks, 7.5e-3))
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        meta_step(params, masks, optimizers, batch, spec["alpha"], spec["steps"],
                  spec["order"] == "second")
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
    return float(np.median(times))


if __name__ == "__main__":
    import json
    import sys

    spec = json.loads(sys.argv[1])
    print(json.dumps({"median_s": time_meta_step(spec, spec["repeats"], spec["threads"]),
                      "torch": torch.__version__}))
