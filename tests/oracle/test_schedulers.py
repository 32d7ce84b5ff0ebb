"""reference.schedulers against diffusers' DDIMScheduler, EulerDiscreteScheduler and DPMSolverMultistepScheduler.

Both sides run the whole sampling loop from the same start noise, with the same deterministic fake model
(a fixed function of the model input and t, computed in NumPy), and every scaled model input and every
intermediate sample is compared.

float64: diffusers keeps its schedule in float32 (betas, alphas_cumprod; Euler/DPM sigmas are cast to
float32) and its Euler and DPM-Solver steps round the sample to float32 (`sample.to(torch.float32)`), which
alone would leave ~1e-7 differences. To get a float64 oracle of the same code, after `set_timesteps` we
(a) replace its tables by float64 ones computed here in torch from the config numbers, after checking that
they round to diffusers' own float32 tables, and (b) hand it samples as `_KeepFloat64` tensors, on which
`.to(torch.float32)` of a float64 tensor is a no-op. Every formula that runs is still diffusers' own.
float32: stock diffusers in float32 against the reference on float32 arrays.
"""

import math

import diffusers
import numpy as np
import pytest
import torch
from numerics import rel_l2, tol

from sdcl.reference.configs import SchedulerConfig
from sdcl.reference.schedulers import (DDIMScheduler, DPMSolverPP2MScheduler, EulerDiscreteScheduler, SCHEDULERS,
                                  make_scheduler)

# diffusers calls np.array on torch tensors, which warns under NumPy 2; not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SD = SchedulerConfig()  # the SD 1.x / 2.x numbers: scaled_linear 0.00085..0.012, leading, steps_offset 1
SHAPE = (2, 4, 8, 8)
_rng = np.random.default_rng(1234)
START = _rng.standard_normal(SHAPE)
FIXED = _rng.standard_normal(SHAPE)
NOISES = _rng.standard_normal((60,) + SHAPE)  # DDIM variance noise, one per step


def fake_model(x: np.ndarray, t) -> np.ndarray:
    """A deterministic stand-in for the UNet: depends on its input and on t."""
    return (0.3 * x + math.sin(float(t) / 100) * FIXED).astype(x.dtype)


# ---------------------------------------------------------------- the oracle

def _common(cfg: SchedulerConfig) -> dict:
    return dict(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type,
                timestep_spacing=cfg.timestep_spacing, steps_offset=cfg.steps_offset)


def make_oracle(name: str, cfg: SchedulerConfig, **kw):
    if name == "ddim":
        return diffusers.DDIMScheduler(**_common(cfg), clip_sample=False, set_alpha_to_one=cfg.set_alpha_to_one)
    if name == "euler":
        return diffusers.EulerDiscreteScheduler(**_common(cfg))
    return diffusers.DPMSolverMultistepScheduler(**_common(cfg), algorithm_type="dpmsolver++", solver_order=2,
                                                 lower_order_final=True, **kw)


def _alphas_cumprod64(cfg: SchedulerConfig) -> torch.Tensor:
    b0, b1, n = cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps
    betas = (torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float64) ** 2 if cfg.beta_schedule == "scaled_linear"
             else torch.linspace(b0, b1, n, dtype=torch.float64))
    return torch.cumprod(1 - betas, 0)


def upcast_oracle(sched, cfg: SchedulerConfig) -> None:
    """Swap the oracle's float32 schedule tables for float64 ones (call after set_timesteps)."""
    acp = _alphas_cumprod64(cfg)
    # float32 cumprod over up to 1000 factors: a few 1e-6 relative
    torch.testing.assert_close(acp.float(), sched.alphas_cumprod, rtol=2e-5, atol=0)
    sched.alphas_cumprod = acp
    if isinstance(sched, diffusers.DDIMScheduler):
        sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64) if cfg.set_alpha_to_one else acp[0]
    else:
        train_sigmas = ((1 - acp) / acp) ** 0.5
        zero = torch.zeros((), dtype=torch.float64)
        final = train_sigmas[0] if sched.config.final_sigmas_type == "sigma_min" else zero
        sigmas = torch.cat([train_sigmas[sched.timesteps.long()], final[None]])
        torch.testing.assert_close(sigmas.float(), sched.sigmas, rtol=2e-5, atol=0)
        sched.sigmas = sigmas


class _KeepFloat64(torch.Tensor):
    """A tensor on which `.to(torch.float32)` of a float64 tensor returns it unchanged."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func is torch.Tensor.to and args[0].dtype == torch.float64
                and any(a is torch.float32 for a in (*args[1:], kwargs.get("dtype")))):
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().as_subclass(torch.Tensor).numpy()


def run_oracle(name, cfg, steps, dtype, eta=0.0, **kw):
    sched = make_oracle(name, cfg, **kw)
    sched.set_timesteps(steps)
    f64 = dtype == np.float64
    if f64:
        upcast_oracle(sched, cfg)
    wrap = (lambda a: torch.from_numpy(a).as_subclass(_KeepFloat64)) if f64 else torch.from_numpy
    x = wrap(START.astype(dtype)) * sched.init_noise_sigma
    trace = []
    for i, t in enumerate(sched.timesteps):
        xin = sched.scale_model_input(x, t)
        out = wrap(fake_model(_np(xin), t))
        extra = dict(eta=eta, variance_noise=wrap(NOISES[i].astype(dtype))) if name == "ddim" else {}
        x = sched.step(out, t, x, **extra).prev_sample
        trace.append((_np(xin), _np(x)))
    return sched, trace


def run_ours(sched, steps, dtype, wrap=lambda a: a, unwrap=lambda a: a):
    sched.set_timesteps(steps)
    x = wrap(START.astype(dtype)) * sched.init_noise_sigma
    trace = []
    for i, t in enumerate(sched.timesteps):
        xin = sched.scale_model_input(x, t)
        x = sched.step(wrap(fake_model(unwrap(xin), t)), t, x, noise=wrap(NOISES[i].astype(dtype)))
        trace.append((unwrap(xin), unwrap(x)))
    return trace


def check_trajectory(name, cfg, steps, dtype, eta=0.0, **kw):
    oracle, expected = run_oracle(name, cfg, steps, dtype, eta=eta, **kw)
    ours = make_scheduler(name, cfg, **({"eta": eta} if name == "ddim" else kw))
    actual = run_ours(ours, steps, dtype)
    np.testing.assert_array_equal(ours.timesteps, oracle.timesteps.numpy())
    assert ours.timesteps.dtype == np.int64
    assert abs(ours.init_noise_sigma - float(oracle.init_noise_sigma)) <= tol(dtype) * float(oracle.init_noise_sigma)
    assert len(actual) == len(expected) == steps
    for i, ((xin, x), (xin_ref, x_ref)) in enumerate(zip(actual, expected)):
        assert xin.dtype == x.dtype == dtype
        assert rel_l2(xin, xin_ref) <= tol(dtype), f"step {i}: model input"
        assert rel_l2(x, x_ref) <= tol(dtype), f"step {i}: sample, rel err {rel_l2(x, x_ref):.2e}"
    # the loop really denoised: the last sample is far from the start noise (not a trivially passing loop)
    assert rel_l2(actual[-1][1], START * ours.init_noise_sigma) > 0.2


# ---------------------------------------------------------------- trajectories

STEPS = [7, 20, 50]
DTYPES = [np.float64, np.float32]
PREDICTIONS = ["epsilon", "v_prediction"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(eta, steps, prediction_type, dtype):
    check_trajectory("ddim", SchedulerConfig(prediction_type=prediction_type), steps, dtype, eta=eta)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("steps", STEPS)
def test_euler_matches_diffusers(steps, prediction_type, dtype):
    check_trajectory("euler", SchedulerConfig(prediction_type=prediction_type), steps, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("final_sigmas_type", ["zero", "sigma_min"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("steps", STEPS)
def test_dpmpp_2m_matches_diffusers(steps, prediction_type, final_sigmas_type, dtype):
    check_trajectory("dpmpp_2m", SchedulerConfig(prediction_type=prediction_type), steps, dtype,
                     final_sigmas_type=final_sigmas_type)


@pytest.mark.parametrize("name,spacing", [("ddim", "trailing"), ("ddim", "linspace"), ("euler", "trailing"),
                                          ("dpmpp_2m", "trailing"), ("dpmpp_2m", "linspace")])
def test_other_spacings_match_diffusers(name, spacing):
    cfg = SchedulerConfig(timestep_spacing=spacing, steps_offset=0)
    check_trajectory(name, cfg, 20, np.float64, eta=1.0 if name == "ddim" else 0.0)


@pytest.mark.parametrize("steps", [14, 15])  # lower_order_final applies below 15 steps
def test_dpmpp_2m_lower_order_final_boundary(steps):
    check_trajectory("dpmpp_2m", SD, steps, np.float64, final_sigmas_type="sigma_min")


def test_ddim_set_alpha_to_one_and_linear_betas_match_diffusers():
    cfg = SchedulerConfig(beta_schedule="linear", beta_start=0.0001, beta_end=0.02, set_alpha_to_one=True)
    check_trajectory("ddim", cfg, 20, np.float64)


# ---------------------------------------------------------------- timesteps

@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("steps", [1, 7, 20, 50, 250])
def test_timesteps_match_diffusers(name, spacing, steps):
    cfg = SchedulerConfig(timestep_spacing=spacing)
    oracle = make_oracle(name, cfg)
    oracle.set_timesteps(steps)
    if name == "euler" and spacing == "linspace":  # fractional timesteps there
        with pytest.raises(ValueError, match="timestep_spacing"):
            make_scheduler(name, cfg)
        return
    ours = make_scheduler(name, cfg)
    ours.set_timesteps(steps)
    assert ours.timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, oracle.timesteps.numpy())


@pytest.mark.parametrize("name", ["ddim", "euler"])
def test_sd_timesteps(name):
    s = make_scheduler(name, SD)
    s.set_timesteps(50)
    np.testing.assert_array_equal(s.timesteps, np.arange(981, 0, -20))  # 981, 961, ..., 1
    s.set_timesteps(20)
    np.testing.assert_array_equal(s.timesteps, np.arange(951, 0, -50))


def test_euler_sigmas_are_sd_values():
    s = EulerDiscreteScheduler(SD)
    assert s.train_sigmas[-1] == pytest.approx(14.6146, abs=5e-5)  # SD sigma_max, as k-diffusion rounds it
    assert s.train_sigmas[0] == pytest.approx(0.0292, abs=5e-5)  # and sigma_min
    # 50 leading steps start at t = 981; the start noise is scaled by sqrt(sigma(981)^2 + 1)
    s.set_timesteps(50)
    acp = np.cumprod(1 - np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2)
    sigma = math.sqrt((1 - acp[981]) / acp[981])
    assert s.init_noise_sigma == pytest.approx(math.sqrt(sigma ** 2 + 1), rel=1e-12)
    assert s.sigmas[-1] == 0 and len(s.sigmas) == 51


# ---------------------------------------------------------------- the device contract

class ArithOnly:
    """Stand-in for a device array: +, -, *, / with another ArithOnly or a Python float / int, nothing else
    (no NumPy function, attribute or NumPy scalar operand)."""
    __array_ufunc__ = None  # NumPy may not take it apart

    def __init__(self, a):
        self.a = a

    @staticmethod
    def _v(o):
        if isinstance(o, ArithOnly):
            return o.a
        if type(o) in (float, int):
            return o
        raise TypeError(f"scheduler used a {type(o).__name__} operand; only Python floats are allowed")

    def __add__(self, o): return ArithOnly(self.a + self._v(o))
    def __radd__(self, o): return ArithOnly(self._v(o) + self.a)
    def __sub__(self, o): return ArithOnly(self.a - self._v(o))
    def __rsub__(self, o): return ArithOnly(self._v(o) - self.a)
    def __mul__(self, o): return ArithOnly(self.a * self._v(o))
    def __rmul__(self, o): return ArithOnly(self._v(o) * self.a)
    def __truediv__(self, o): return ArithOnly(self.a / self._v(o))
    def __neg__(self): return ArithOnly(-self.a)


CONTRACT_CASES = [("ddim", {"eta": 1.0}), ("euler", {}), ("dpmpp_2m", {}),
                  ("dpmpp_2m", {"final_sigmas_type": "sigma_min"})]


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("name,kw", CONTRACT_CASES)
def test_step_uses_only_arithmetic_with_python_floats(name, kw, prediction_type):
    cfg = SchedulerConfig(prediction_type=prediction_type)
    plain = run_ours(make_scheduler(name, cfg, **kw), 20, np.float32)
    wrapped = run_ours(make_scheduler(name, cfg, **kw), 20, np.float32, wrap=ArithOnly, unwrap=lambda w: w.a)
    for (xin, x), (xin_w, x_w) in zip(plain, wrapped):
        assert x_w.dtype == np.float32  # Python float coefficients keep a float32 sample float32
        np.testing.assert_array_equal(xin_w, xin)
        np.testing.assert_array_equal(x_w, x)


def test_arith_only_rejects_numpy_use():  # the stand-in above can catch a violation
    w = ArithOnly(np.ones(3, np.float32))
    with pytest.raises(TypeError):
        np.float64(2.0) * w
    with pytest.raises(TypeError):
        np.sqrt(w)


def test_pyopencl_arrays():
    import pyopencl as cl
    import pyopencl.array as cl_array
    try:
        ctx = cl.create_some_context(interactive=False)
    except Exception as e:  # no OpenCL platform here
        pytest.skip(f"no OpenCL context: {e}")
    queue = cl.CommandQueue(ctx)
    for name, kw in CONTRACT_CASES:
        cfg = SchedulerConfig(prediction_type="v_prediction")
        plain = run_ours(make_scheduler(name, cfg, **kw), 7, np.float32)
        dev = run_ours(make_scheduler(name, cfg, **kw), 7, np.float32,
                       wrap=lambda a: cl_array.to_device(queue, a), unwrap=lambda d: d.get())
        for (xin, x), (xin_d, x_d) in zip(plain, dev):
            assert x_d.dtype == np.float32
            # float32 on both; the device may contract a*b+c into an fma: a few ulps
            assert rel_l2(xin_d, xin) <= 1e-6 and rel_l2(x_d, x) <= 1e-6, name


# ---------------------------------------------------------------- errors and factory

def test_make_scheduler():
    assert isinstance(make_scheduler("ddim", SD, eta=0.5), DDIMScheduler)
    assert make_scheduler("ddim", SD, eta=0.5).eta == 0.5
    assert isinstance(make_scheduler("euler", SD), EulerDiscreteScheduler)
    assert isinstance(make_scheduler("dpmpp_2m", SD), DPMSolverPP2MScheduler)
    with pytest.raises(ValueError, match="unknown scheduler 'pndm'.*ddim, euler, dpmpp_2m"):
        make_scheduler("pndm", SD)


def test_ddim_eta_needs_noise():
    s = DDIMScheduler(SD, eta=1.0)
    s.set_timesteps(10)
    t = s.timesteps[0]
    with pytest.raises(ValueError, match="noise"):
        s.step(FIXED, t, START)
    s0 = DDIMScheduler(SD)
    s0.set_timesteps(10)
    np.testing.assert_array_equal(s0.step(FIXED, t, START), s0.step(FIXED, t, START, noise=NOISES[0]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="prediction_type"):
        s = DDIMScheduler(SchedulerConfig(prediction_type="sample"))
        s.set_timesteps(10)
        s.step(FIXED, s.timesteps[0], START)
    with pytest.raises(ValueError, match="beta_schedule"):
        EulerDiscreteScheduler(SchedulerConfig(beta_schedule="squaredcos_cap_v2"))
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.999, got 1001"):
        DDIMScheduler(SD).set_timesteps(1001)
    s = EulerDiscreteScheduler(SD)
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="not in the schedule"):
        s.scale_model_input(START, 999)
    d = DPMSolverPP2MScheduler(SD)
    d.set_timesteps(10)
    with pytest.raises(RuntimeError, match="in order"):
        d.step(FIXED, d.timesteps[3], START)


@pytest.mark.parametrize("name", ["ddim", "euler", "dpmpp_2m"])
def test_the_most_steps_run_and_one_more_is_refused_by_name(name):
    """steps_range's upper end is the most steps whose timesteps all lie in the training schedule: it lays out,
    steps through and matches diffusers' timesteps; one more is a ValueError naming the range (not an IndexError
    from a timestep beyond the schedule)."""
    from sdcl.reference.schedulers import steps_range
    lo, hi = steps_range(name, SD)
    assert lo == 1 and hi == (998 if name == "dpmpp_2m" else 999)
    s = make_scheduler(name, SD)
    s.set_timesteps(hi)
    assert s.timesteps.max() < SD.num_train_timesteps
    oracle = make_oracle(name, SD)
    oracle.set_timesteps(hi)
    np.testing.assert_array_equal(s.timesteps, oracle.timesteps.numpy())
    x = START
    for t in s.timesteps[:3]:
        x = s.step(FIXED, t, s.scale_model_input(x, t))
    with pytest.raises(ValueError, match=rf"steps must be in 1\.\.{hi}"):
        make_scheduler(name, SD).set_timesteps(hi + 1)
