"""The PyTorch half of the zoo (tools/make_zoo.py runs it inside its own torch venv): small nets trained
briefly on the shipped digits and exported by torch.onnx as a user would: the default (dynamo) exporter,
and the TorchScript one (dynamo=False). Imports nothing from edgefdfa (the venv does not have it).

  python zoo_torch.py DATA.npz OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

SEED = 0


def train(build, X: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    """build() seeded, a brief fit (Adam 1e-2, cross-entropy, batch 32), then eval mode for export."""
    torch.manual_seed(SEED)
    model = build()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X_t)).split(32):
            opt.zero_grad()
            out = model(X_t[idx])
            # a model ending in Softmax is trained on the log of its probabilities
            loss = nn.functional.nll_loss(torch.log(out + 1e-9), y_t[idx]) if isinstance(model[-1], nn.Softmax) \
                else loss_fn(out, y_t[idx])
            loss.backward()
            opt.step()
    return model.eval()


def mlp() -> nn.Sequential:
    """64-32 relu -> 32-10, logits out (no softmax), as PyTorch classifiers usually are."""
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class MatMulDense(nn.Module):
    """A hand-written dense layer (x @ W + b): exports as MatMul + Add, as tf2onnx writes Keras Dense layers,
    where nn.Linear exports as Gemm. onnxruntime's dynamic quantizer handles MatMul, not Gemm."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / n_in ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


def mlp_matmul() -> nn.Sequential:
    """64-32 relu -> 32-10 logits, with MatMulDense layers."""
    return nn.Sequential(MatMulDense(64, 32), nn.ReLU(), MatMulDense(32, 10))


def mlp_batchnorm() -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear -> Softmax: BatchNorm directly after a dense layer."""
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10),
                         nn.Softmax(dim=1))


def conv_head1() -> nn.Sequential:
    """Conv2d backbone on (1, 8, 8) digits with a one-layer head: Flatten -> a single Linear(288, 10), logits."""
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def main(data_path: str, out_dir: str) -> None:
    d = np.load(data_path)
    out = Path(out_dir)
    X, y = d["digits_X_train"], d["digits_y_train"]
    X_img = X.reshape(-1, 1, 8, 8)
    notes = {}

    model = train(mlp, X, y, 20)
    path = out / "torch-digits-mlp-dynamo.onnx"
    torch.onnx.export(model, (torch.from_numpy(X[:1]),), str(path))  # torch 2.13's defaults
    external = (out / "torch-digits-mlp-dynamo.onnx.data").exists()
    if not external:  # the defaults kept the weights embedded: ask the exporter itself for external data
        torch.onnx.export(model, (torch.from_numpy(X[:1]),), str(path), external_data=True)
    notes[path.name] = "default export" + ("" if external else ", external_data=True")

    model = train(mlp_matmul, X, y, 20)
    path = out / "torch-digits-mlp-matmul.onnx"
    torch.onnx.export(model, (torch.from_numpy(X[:1]),), str(path))
    notes[path.name] = "default export" + (", weights external" if path.with_suffix(".onnx.data").exists() else "")

    model = train(mlp_batchnorm, X, y, 20)
    path = out / "torch-digits-bn-torchscript.onnx"
    torch.onnx.export(model, (torch.from_numpy(X[:1]),), str(path), dynamo=False)
    notes[path.name] = "TorchScript export (dynamo=False), model in eval mode"

    model = train(conv_head1, X_img, y, 15)
    path = out / "torch-digits-conv-head1.onnx"
    torch.onnx.export(model, (torch.from_numpy(X_img[:1]),), str(path))
    notes[path.name] = "default export" + (", weights external" if path.with_suffix(".onnx.data").exists() else "")

    for name in notes:
        onnx.checker.check_model(str(out / name))
    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxscript
        versions["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    (out / "torch_notes.json").write_text(json.dumps({"versions": versions, "export": notes}))
    print(f"torch: wrote {', '.join(notes)} with {versions}")


if __name__ == "__main__":
    main(*sys.argv[1:])
