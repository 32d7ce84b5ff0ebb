"""Samplers: DDIM, Euler and DPM-Solver++(2M), mirroring the diffusers scheduler API so a pipeline can swap them.

Each scheduler has `set_timesteps(n)`, `timesteps` (descending int64 array), `init_noise_sigma`,
`scale_model_input(sample, t)` and `step(model_output, t, sample, noise=None) -> prev_sample`, with the
semantics of the diffusers scheduler of the same algorithm built from the same `SchedulerConfig`.

The schedule (betas, alphas_cumprod, sigmas, per-step coefficients) is float64 NumPy on the host. `step` and
`scale_model_input` touch `sample`, `model_output` and `noise` only through +, -, *, / with Python floats, so
the same code runs on `numpy.ndarray` and on `pyopencl.array.Array` (latents stay on the device), and a
float32 sample stays float32.

Noise parametrisations: DDIM and DPM-Solver work on the variance-preserving sample x = alpha*x0 + sigma*eps
(alpha^2 = alphas_cumprod[t], alpha^2 + sigma^2 = 1); Euler on the variance-exploding sample x = x0 + s*eps,
s = sigma/alpha, which is why its `init_noise_sigma` is large and `scale_model_input` divides by sqrt(s^2 + 1).
"""

from __future__ import annotations

import math

import numpy as np

from sdcl.reference.configs import SchedulerConfig


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """Cumulative products of (1 - beta_t), float64, one per training timestep."""
    n, b0, b1 = config.num_train_timesteps, config.beta_start, config.beta_end
    if config.beta_schedule == "scaled_linear":
        betas = np.linspace(math.sqrt(b0), math.sqrt(b1), n, dtype=np.float64) ** 2
    elif config.beta_schedule == "linear":
        betas = np.linspace(b0, b1, n, dtype=np.float64)
    else:
        raise ValueError(f"unsupported beta_schedule {config.beta_schedule!r}; use 'scaled_linear' or 'linear'")
    return np.cumprod(1.0 - betas)


def _layout(config: SchedulerConfig, n: int, extra_point: bool = False) -> np.ndarray:
    """The n timesteps, descending, as diffusers lays them out for config.timestep_spacing (unchecked)."""
    T = config.num_train_timesteps
    m = n + 1 if extra_point else n
    if config.timestep_spacing == "leading":
        ts = (np.arange(m) * (T // m))[::-1][:n] + config.steps_offset
    elif config.timestep_spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, m))[::-1][:n]
    elif config.timestep_spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    else:
        raise ValueError(f"unsupported timestep_spacing {config.timestep_spacing!r}; "
                         "use 'leading', 'linspace' or 'trailing'")
    return ts.astype(np.int64)


def _valid(config: SchedulerConfig, ts: np.ndarray) -> bool:
    """Timesteps within the training schedule, none repeated."""
    return bool(ts.size and 0 <= ts.min() and ts.max() < config.num_train_timesteps
                and len(np.unique(ts)) == len(ts))


def max_steps(config: SchedulerConfig, extra_point: bool = False) -> int:
    """The most inference steps whose timesteps all lie in the training schedule, unrepeated ("leading" with
    steps_offset 1 reaches T at T steps, so its most is T - 1; DPM-Solver's extra point costs one more)."""
    n = config.num_train_timesteps
    while n > 1 and not _valid(config, _layout(config, n, extra_point)):
        n -= 1
    return n


def _timesteps(config: SchedulerConfig, n: int, extra_point: bool = False) -> np.ndarray:
    """The n inference timesteps, descending, for config.timestep_spacing, as diffusers lays them out.

    extra_point: DPM-Solver lays n + 1 points for "leading" and "linspace" and drops the lowest one.
    """
    T = config.num_train_timesteps
    if not 1 <= n <= T:
        raise ValueError(f"steps must be in 1..{max_steps(config, extra_point)}, got {n}")
    ts = _layout(config, n, extra_point)
    if not _valid(config, ts):
        raise ValueError(f"steps must be in 1..{max_steps(config, extra_point)} with timestep_spacing "
                         f"{config.timestep_spacing!r} and steps_offset {config.steps_offset}, got {n} (its timesteps "
                         f"{'repeat' if len(np.unique(ts)) != len(ts) else f'reach {int(ts.max())}'}, the training "
                         f"schedule has 0..{T - 1})")
    return ts


def _index(timesteps: np.ndarray, t) -> int:
    hits = np.flatnonzero(timesteps == int(t))
    if hits.size == 0:
        raise ValueError(f"timestep {t} is not in the schedule; call set_timesteps and pass its timesteps")
    return int(hits[0])


def _predict_x0(prediction_type: str, model_output, sample, alpha: float, sigma: float):
    """The clean sample x0 the model predicts, for the VP sample = alpha*x0 + sigma*eps."""
    if prediction_type == "epsilon":
        return (sample - sigma * model_output) / alpha
    if prediction_type == "v_prediction":  # v = alpha*eps - sigma*x0
        return alpha * sample - sigma * model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; use 'epsilon' or 'v_prediction'")


class DDIMScheduler:
    """DDIM (Song et al. 2020) as diffusers' DDIMScheduler with clip_sample=False, thresholding off.

    eta = 0 is deterministic DDIM; eta = 1 is DDPM-like. With eta > 0, `step` needs `noise` (standard normal,
    the sample's shape, drawn by the caller), the counterpart of diffusers' `variance_noise`.
    """

    def __init__(self, config: SchedulerConfig, eta: float = 0.0):
        self.config = config
        self.eta = float(eta)
        self.needs_noise = self.eta > 0
        self.alphas_cumprod = alphas_cumprod(config)
        self.final_alpha_cumprod = 1.0 if config.set_alpha_to_one else float(self.alphas_cumprod[0])
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = np.arange(config.num_train_timesteps, dtype=np.int64)[::-1].copy()

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = _timesteps(self.config, num_inference_steps)
        self.num_inference_steps = num_inference_steps

    def scale_model_input(self, sample, t):
        return sample

    def step(self, model_output, t, sample, noise=None):
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps before step")
        t = int(t)
        prev_t = t - self.config.num_train_timesteps // self.num_inference_steps  # as diffusers, for any spacing
        a_t = float(self.alphas_cumprod[t])
        a_prev = float(self.alphas_cumprod[prev_t]) if prev_t >= 0 else self.final_alpha_cumprod
        alpha, sigma = math.sqrt(a_t), math.sqrt(1 - a_t)
        x0 = _predict_x0(self.config.prediction_type, model_output, sample, alpha, sigma)
        eps = model_output if self.config.prediction_type == "epsilon" else alpha * model_output + sigma * sample
        std = self.eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        # DDIM, eq. 12: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps + std z
        prev_sample = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - std * std) * eps
        if self.eta > 0:
            if noise is None:
                raise ValueError("DDIM with eta > 0 needs noise: pass step(..., noise=standard normal like sample)")
            prev_sample = prev_sample + std * noise
        return prev_sample


class EulerDiscreteScheduler:
    """Euler steps of the probability-flow ODE in sigma, as diffusers' EulerDiscreteScheduler with its defaults
    (s_churn = 0, linear sigma interpolation, final sigma zero). Timesteps are integers, so "linspace" spacing
    (fractional timesteps in diffusers) is not supported."""

    def __init__(self, config: SchedulerConfig):
        if config.timestep_spacing not in ("leading", "trailing"):
            raise ValueError(f"EulerDiscreteScheduler supports timestep_spacing 'leading' or 'trailing', "
                             f"got {config.timestep_spacing!r}")
        self.config = config
        self.needs_noise = False
        acp = alphas_cumprod(config)
        self.train_sigmas = np.sqrt((1 - acp) / acp)  # VE noise level of each training timestep
        self.num_inference_steps = None
        self.timesteps = np.arange(config.num_train_timesteps, dtype=np.int64)[::-1].copy()
        self.sigmas = np.append(self.train_sigmas[self.timesteps], 0.0)

    @property
    def init_noise_sigma(self) -> float:
        s = float(self.sigmas.max())
        # diffusers' rule: sqrt(s^2 + 1) for "leading", s otherwise
        return math.sqrt(s * s + 1) if self.config.timestep_spacing == "leading" else s

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = _timesteps(self.config, num_inference_steps)
        self.sigmas = np.append(self.train_sigmas[self.timesteps], 0.0)
        self.num_inference_steps = num_inference_steps

    def scale_model_input(self, sample, t):
        sigma = float(self.sigmas[_index(self.timesteps, t)])
        return sample / math.sqrt(sigma * sigma + 1)  # the VP sample the model was trained on

    def step(self, model_output, t, sample, noise=None):
        i = _index(self.timesteps, t)
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        alpha = 1 / math.sqrt(sigma * sigma + 1)  # the VP sample is alpha * sample, its noise sigma * alpha
        x0 = _predict_x0(self.config.prediction_type, model_output, alpha * sample, alpha, sigma * alpha)
        # Euler step of dx/dsigma = (x - x0) / sigma from sigma to sigma_next
        return sample + (sample - x0) * ((sigma_next - sigma) / sigma)


class DPMSolverPP2MScheduler:
    """DPM-Solver++(2M) (Lu et al. 2022) as diffusers' DPMSolverMultistepScheduler with algorithm_type
    "dpmsolver++", solver_order 2, solver_type "midpoint". final_sigmas_type "zero" (the diffusers default) makes
    the last step land on the predicted x0; "sigma_min" stops at the lowest training noise level."""

    def __init__(self, config: SchedulerConfig, lower_order_final: bool = True, final_sigmas_type: str = "zero"):
        if final_sigmas_type not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type must be 'zero' or 'sigma_min', got {final_sigmas_type!r}")
        self.config = config
        self.lower_order_final = lower_order_final
        self.final_sigmas_type = final_sigmas_type
        self.needs_noise = False
        self.init_noise_sigma = 1.0
        acp = alphas_cumprod(config)
        self.train_sigmas = np.sqrt((1 - acp) / acp)  # VE noise level s = sigma / alpha
        self.timesteps = None
        self._last = None  # (step index, x0) of the previous step

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = _timesteps(self.config, num_inference_steps, extra_point=True)
        final = 0.0 if self.final_sigmas_type == "zero" else self.train_sigmas[0]
        self.sigmas = np.append(self.train_sigmas[self.timesteps], final)
        self._last = None

    def scale_model_input(self, sample, t):
        return sample

    def step(self, model_output, t, sample, noise=None):
        if self.timesteps is None:
            raise RuntimeError("call set_timesteps before step")
        i, n = _index(self.timesteps, t), len(self.timesteps)
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        alpha = 1 / math.sqrt(s * s + 1)
        x0 = _predict_x0(self.config.prediction_type, model_output, sample, alpha, s * alpha)
        # first order on the first step, and on the last when lower_order_final and < 15 steps (a last step to
        # sigma 0, final_sigmas_type "zero", lands on x0 below, the first-order limit)
        first_order = i == 0 or (i == n - 1 and self.lower_order_final and n < 15)
        if not first_order and (self._last is None or self._last[0] != i - 1):
            raise RuntimeError("DPM-Solver++(2M) steps must run in order after set_timesteps")
        prev_x0 = None if first_order else self._last[1]
        self._last = (i, x0)
        if s_next == 0:  # the update below with sigma_next = 0, alpha_next = 1, e^-h = 0
            return x0
        alpha_next = 1 / math.sqrt(s_next * s_next + 1)
        h = math.log(s / s_next)  # lambda_next - lambda, lambda = log(alpha/sigma) = -log(s)
        # x_next = (sigma_next/sigma) x - alpha_next (e^-h - 1) D (sigma = s*alpha, the VP noise level), with
        # D = x0 (first order) or the midpoint extrapolation x0 + (x0 - x0_prev) / (2 r), r = h_prev / h
        if first_order:
            d = x0
        else:
            r = math.log(float(self.sigmas[i - 1]) / s) / h
            d = x0 + (0.5 / r) * (x0 - prev_x0)
        return (s_next * alpha_next / (s * alpha)) * sample - (alpha_next * math.expm1(-h)) * d


SCHEDULERS = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpmpp_2m": DPMSolverPP2MScheduler}
_EXTRA_POINT = {"dpmpp_2m": True}     # samplers that lay one more point than they step through


def steps_range(name: str, config: SchedulerConfig) -> tuple:
    """(1, most) inference steps the sampler `name` takes with this schedule."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return 1, max_steps(config, _EXTRA_POINT.get(name, False))


def make_scheduler(name: str, config: SchedulerConfig, **kw):
    """A scheduler by name ("ddim", "euler", "dpmpp_2m"); kw go to its constructor (e.g. eta for DDIM)."""
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}") from None
    return cls(config, **kw)
