"""Record FlexIT trajectories from the reference loop: tests/golden/flexit_reference_tiny.pt.

An independent re-implementation of FlexIT's ``FlexitEditer.__call__`` / ``step`` (facebookresearch/
SemanticImageTranslation, src/flexit_editer.py, with src/vqc_core.py's ``CLIP``, ``LPIPS`` and
``soft_clamp``): the VQGAN latent space, SGD, the 'l1l2' latent term with its 1e-6 noise, torch's
global RNG, torchvision's ``train_prep`` / ``test_prep``, and the reference's reductions, written
out here without editrt's FlexIT. Only the networks come from editrt: seeded random tiny VQGAN and
CLIP towers and the lpips package's LPIPS-vgg with a seeded trunk, which the reference would load
from checkpoint files. Their parameters are frozen here as in editrt; the reference leaves them
trainable, which only adds parameter gradients, but on CPU open_clip's text attention then rounds
its last bits differently (measured here: z after one step then differs by up to 9e-8).

tests/test_flexit_exact.py runs editrt's FlexIT with ``exact_reference=True`` and compares it bit
for bit with the stored file where ``environment()`` matches the one that recorded it, and with
this loop run live elsewhere. Regenerate only when this loop changes:

    PYTHONPATH=sdk .venv/bin/python scripts/make_goldens_flexit.py
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness  # noqa: E402  (the CPU model name the benchmark documents record)

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "flexit_reference_tiny.pt"
THREADS = 1
IMAGE_SIZE = 96  # != the tiny CLIP's 64 px input, so test_prep and RandomResizedCrop resize
STEPS = 3
SEED = 7
TEXTS = ("a red circle", "a blue square")
# the paper configuration's coefficients (exp_configs/final.yaml)
COEFS = dict(lr=0.05, lpips_weight=0.15, znorm_weight=0.05, im0_coef=0.2, source_coef=0.4, target_coef=1.0)
CASES = {"views": 2, "no_views": 0}  # n_augment: two random views per net, or ncuts=0
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_models() -> dict:
    """The networks both loops use: tiny VQGAN, two differently seeded tiny CLIPs, LPIPS-vgg."""
    from editrt.models.clip import ClipEnsemble, load_clip
    from editrt.models.lpips import load_lpips
    from editrt.models.vqgan import load_vqgan

    return {"clip": ClipEnsemble([load_clip("tiny", random_init=True, seed=s) for s in (0, 1)]),
            "vqgan": load_vqgan("tiny", random_init=True, seed=0),
            "lpips": load_lpips("vgg", random_init=True, seed=0)}


def source_image() -> Image.Image:
    """A seeded RGB image already at IMAGE_SIZE, so Resize + CenterCrop leave it as it is."""
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8))


def unit(x: torch.Tensor) -> torch.Tensor:
    """utils/torch_utils.py's monkey-patched ``Tensor.normalize``."""
    return x / x.norm(dim=-1, keepdim=True)


def soft_clamp(x: torch.Tensor, beta: float = 5) -> torch.Tensor:
    """src/vqc_core.py ``soft_clamp``."""
    x = 2 * x - 1
    x = torch.tanh(x.pow(beta))
    x = x.relu().pow(1 / beta) - (-x).relu().pow(1 / beta)
    return (x + 1) / 2


class ReferenceClip:
    """src/vqc_core.py ``CLIP`` around one editrt CLIP net (erasing off)."""

    def __init__(self, net):
        self.net = net
        size = net.image_size
        norm = T.Normalize(mean=CLIP_MEAN, std=CLIP_STD)
        self.train_prep = torch.nn.Sequential(T.RandomRotation(10),
                                              T.RandomResizedCrop(size, scale=(0.8, 1), ratio=(0.9, 1.1)),
                                              T.RandomHorizontalFlip(), norm)
        self.test_prep = torch.nn.Sequential(T.Resize(size), T.CenterCrop(size), norm)

    def encode_image(self, x: torch.Tensor, ncuts: int) -> torch.Tensor:
        x = x.squeeze(0)
        x = torch.stack([self.train_prep(x) for _ in range(ncuts)]) if ncuts else self.test_prep(x)[None]
        return unit(self.net.encode_image(x)).mean(0)

    def encode_text(self, texts) -> torch.Tensor:
        with torch.no_grad():
            return unit(self.net.encode_text(self.net.tokenize(list(texts)))).detach()


class ReferenceLoop:
    """``FlexitEditer`` with latent_space='vqgan', optimizer='sgd', znorm_loss='l1l2'."""

    def __init__(self, models: dict, n_augment: int):
        self.vqgan = models["vqgan"]
        self.lpips_vgg = models["lpips"].lp  # the lpips package's LPIPS module
        self.nets = [ReferenceClip(net) for net in models["clip"]]
        self.n_augment = n_augment
        self.args = dict(COEFS)

    def encode(self, x):
        return self.vqgan.quant_conv(self.vqgan.encoder(2 * x[None] - 1))

    def decode(self, z):
        return soft_clamp((self.vqgan.decoder(self.vqgan.post_quant_conv(z)) + 1) / 2)

    def lpips(self, x1, x2):  # src/vqc_core.py LPIPS with grey_ratio 0
        def norm(x):
            x = x if x.ndim == 4 else x[None]
            return (1 - 0.0) * x + 0.0 * x.mean(1, keepdim=True).expand(x.shape[0], 3, *x.shape[2:])

        return self.lpips_vgg(norm(x1), norm(x2), normalize=True).mean()

    def __call__(self, img: Image.Image, txt1: str, txt2: str, steps: int) -> dict:
        a = self.args
        with torch.no_grad():
            self.img0 = T.Compose([T.Resize(IMAGE_SIZE), T.CenterCrop(IMAGE_SIZE), T.ToTensor()])(img)
            self.z0 = self.encode(self.img0).cpu().detach()
            e_i0 = [n.encode_image(self.img0, ncuts=0) for n in self.nets]
            texts = [n.encode_text([txt1, txt2]) for n in self.nets]
            self.e_s, self.e_t = [t[0] for t in texts], [t[1] for t in texts]
            self.tgt = [a["target_coef"] * t + a["im0_coef"] * i - a["source_coef"] * s
                        for t, i, s in zip(self.e_t, e_i0, self.e_s)]
        self.z = self.z0.clone().detach().requires_grad_(True)
        self.z.retain_grad()
        out = {"z": [self.z0.clone()], **{k: [] for k in ("loss", "loss_z", "loss_clip", "loss_lpips",
                                                          "sim_source", "sim_target")}}
        for _ in range(steps):
            for k, v in self.step().items():
                out[k].append(v)
            out["z"].append(self.z.detach().clone())
        return {k: torch.stack(v) if k == "z" else torch.tensor(v, dtype=torch.float64) for k, v in out.items()}

    def step(self) -> dict:
        a, z = self.args, self.z
        mean = lambda x: sum(x) / len(x)  # noqa: E731 - the reference's reduce(mean)
        noise = 1e-6 * torch.randn_like(z)
        loss_z = (z - self.z0 + noise).pow(2).sum(1).sqrt().sum() / self.z0.pow(2).sum(1).sqrt().sum().detach()
        dec = self.decode(z)
        loss_lpips = self.lpips(dec, self.img0)
        pred = [n.encode_image(dec, ncuts=self.n_augment) for n in self.nets]
        loss_clip = -mean([(p @ t).flatten() for p, t in zip(pred, self.tgt)])
        signal = loss_clip + a["lpips_weight"] * loss_lpips + a["znorm_weight"] * loss_z
        signal.backward(retain_graph=True)
        record = {"loss": signal.item(), "loss_z": loss_z.item(), "loss_clip": loss_clip.item(),
                  "loss_lpips": loss_lpips.item(),
                  "sim_source": mean([p @ s for p, s in zip(pred, self.e_s)]).item(),
                  "sim_target": mean([p @ t for p, t in zip(pred, self.e_t)]).item()}
        g = z.grad[0]
        g /= g.norm(p=2)
        self.z = z.detach() - a["lr"] * g * self.z0.norm().item()
        self.z.requires_grad = True
        self.z.retain_grad()
        return record


def record(models: dict, n_augment: int, steps: int = STEPS, seed: int = SEED) -> dict:
    """One reference trajectory: z after 0..steps updates [steps+1, 1, C, h, w] and per-step logs."""
    torch.manual_seed(seed)
    return ReferenceLoop(models, n_augment)(source_image(), *TEXTS, steps)


def environment() -> dict:
    """What bit-for-bit equality with the stored file depends on. The CPU model is part of it:
    two CPUs that both report AVX512 can round the same loop differently (seen: the machine that
    recorded the stored file and an AMD EPYC, whose z differed by 5e-4 after 4 steps)."""
    return {"torch": str(torch.__version__), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "cpu_model": harness.cpu_model(), "threads": THREADS}


def compute() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.random.fork_rng(devices=[]):
            models = tiny_models()
            return {"environment": environment(),
                    **{case: record(models, n) for case, n in CASES.items()}}
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    tmp = GOLDEN.with_suffix(".tmp")
    torch.save(compute(), tmp)
    tmp.replace(GOLDEN)
    print(f"wrote {GOLDEN}")
