"""Text-to-image: tokenizer -> text encoder -> sampler loop over the UNet with classifier-free guidance -> VAE.

The pipeline runs each stage on a `Backend`: the NumPy reference (`NUMPY`) or an OpenCL device
(`opencl_impl.backend.OpenCLBackend`), one per stage if wanted. A backend moves arrays between host and device
and supplies the ops module the models are written against; latents stay on the UNet's device for the whole loop.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from sdcl.reference import ops as reference_ops
from sdcl.reference.configs import SDConfig


@dataclass(frozen=True)
class Backend:
    """Where a stage runs: its ops module, the two transfers (identity for NumPy), and how the pipeline calls a model
    it calls again and again at one input shape, the UNet each step, the text encoder each prompt and the VAE decoder
    each image (`in_loop(model)`: as it is, or, on OpenCL, its launches recorded at the first call and replayed)."""

    name: str
    ops: object
    to_device: object = staticmethod(lambda a: a)
    to_host: object = staticmethod(lambda a: a)
    sync: object = staticmethod(lambda: None)
    in_loop: object = staticmethod(lambda model: model)


NUMPY = Backend("numpy", reference_ops)


def init_weights(config: SDConfig, seed: int = 0, dtype=np.float32) -> dict:
    """Seeded random weights for all three models, in the in-memory (diffusers) key layout."""
    from sdcl.reference import text_encoder, unet, vae
    return {"text_encoder": text_encoder.init_weights(config.text_encoder, seed, dtype),
            "unet": unet.init_weights(config.unet, seed, dtype),
            "vae": vae.init_weights(config.vae, seed, dtype)}


@dataclass
class StableDiffusion:
    config: SDConfig
    weights: dict
    text_backend: Backend = NUMPY
    unet_backend: Backend = NUMPY
    vae_backend: Backend = NUMPY
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        from sdcl.reference.text_encoder import TextEncoder
        from sdcl.reference.tokenizer import CLIPTokenizer
        from sdcl.reference.unet import UNet
        from sdcl.reference.vae import VAE

        def place(backend, ws):
            return {k: backend.to_device(v) for k, v in ws.items()}

        self.tokenizer = CLIPTokenizer.from_config(self.config.text_encoder)
        self.text_encoder = self.text_backend.in_loop(
            TextEncoder(self.config.text_encoder, place(self.text_backend, self.weights["text_encoder"]),
                        ops=self.text_backend.ops))
        self.unet = self.unet_backend.in_loop(
            UNet(self.config.unet, place(self.unet_backend, self.weights["unet"]), ops=self.unet_backend.ops))
        self.vae = self.vae_backend.in_loop(
            VAE(self.config.vae, place(self.vae_backend, self.weights["vae"]), ops=self.vae_backend.ops))

    def encode_prompt(self, prompt: str, negative_prompt: str = "") -> np.ndarray:
        """(2, 77, D) text embeddings: [negative (unconditional), prompt], on the host. A prompt longer than the
        text encoder reads is cut, with a warning that says how many tokens are dropped."""
        keep = self.tokenizer.context_length - 2            # the start and end tokens take two places
        for what, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
            n = len(self.tokenizer.encode(text))
            if n > keep:
                warnings.warn(f"the {what} is {n} tokens long; the text encoder reads {keep}: the last {n - keep} "
                              "are dropped", stacklevel=3)
        ids = self.tokenizer([negative_prompt, prompt])
        return self.text_backend.to_host(self.text_encoder(ids))

    def __call__(self, prompt: str, negative_prompt: str = "", seed: int = 0, steps: int = 20,
                 guidance: float = 7.5, height: int = 512, width: int = 512, sampler: str = "ddim",
                 eta: float = 0.0, progress: bool = False, dtype=np.float32) -> np.ndarray:
        """An (H, W, 3) uint8 image; deterministic for a given seed."""
        latents = self.denoise(prompt, negative_prompt, seed, steps, guidance, height, width, sampler, eta,
                               progress, dtype)
        return to_uint8(self.decode(latents, dtype))

    def denoise(self, prompt: str, negative_prompt: str = "", seed: int = 0, steps: int = 20,
                guidance: float = 7.5, height: int = 512, width: int = 512, sampler: str = "ddim",
                eta: float = 0.0, progress: bool = False, dtype=np.float32) -> np.ndarray:
        """Text encoding and the sampler loop; the final latents (1, 4, h, w) on the host. dtype: the models'
        (their weights'); a float16 model's sampler runs in float32 (the latents, guidance and the scheduler's
        steps: a few elementwise ops a step, and the latents keep float32's precision from step to step), the UNet
        reading and returning float16."""
        from sdcl.reference.schedulers import make_scheduler

        s = self.config.vae_scale
        if height % s or width % s or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {s}, got {height}x{width}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        rng = np.random.default_rng(seed)
        sched = make_scheduler(sampler, self.config.scheduler, **({"eta": eta} if sampler == "ddim" else {}))
        sched.set_timesteps(steps)

        # 1. text
        t0 = time.perf_counter()
        context_host = self.encode_prompt(prompt, negative_prompt).astype(dtype)
        self.timings = {"text_encoder": time.perf_counter() - t0}

        # 2. denoising loop, latents on the UNet's device
        t0 = time.perf_counter()
        ub = self.unet_backend
        context = ub.to_device(context_host)
        shape = (1, self.config.unet.in_channels, height // s, width // s)
        sample_dtype = np.dtype(np.float32) if np.dtype(dtype) == np.float16 else np.dtype(dtype)
        latents = ub.to_device((rng.standard_normal(shape) * sched.init_noise_sigma).astype(sample_dtype))
        iterator = sched.timesteps
        if progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc="denoising", unit="step")
        for t in iterator:
            x = sched.scale_model_input(latents, t)
            eps = self.unet(ub.ops.astype(ub.ops.concat([x, x], axis=0), dtype), np.array([t, t]), context)
            eps = ub.ops.astype(eps, sample_dtype)  # (2, 4, h, w)
            eps_uncond, eps_text = eps[:1], eps[1:]
            guided = eps_uncond + guidance * (eps_text - eps_uncond)  # classifier-free guidance
            noise = ub.to_device(rng.standard_normal(shape).astype(sample_dtype)) if sched.needs_noise else None
            latents = sched.step(guided, t, latents, noise=noise)
        latents = ub.to_host(latents)
        self.timings["unet"] = time.perf_counter() - t0
        self.timings["unet_per_step"] = self.timings["unet"] / steps
        return latents

    def decode(self, latents: np.ndarray, dtype=None) -> np.ndarray:
        """Host latents (1, 4, h, w) -> (3, H, W) image in [-1, 1] on the host; dtype: the VAE's (default: the
        latents')."""
        t0 = time.perf_counter()
        z = latents / self.config.vae.scaling_factor
        z = self.vae_backend.to_device(z if dtype is None else z.astype(dtype))
        image = self.vae_backend.to_host(self.vae.decode(z))[0]
        self.timings["vae_decode"] = time.perf_counter() - t0
        return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounding to nearest."""
    x = np.clip(image.astype(np.float64) / 2 + 0.5, 0.0, 1.0)
    return np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8)
