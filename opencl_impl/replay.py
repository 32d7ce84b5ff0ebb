"""Launch replay: the kernel launches of a model call recorded once, then replayed with no per-launch Python work
beyond the enqueue (the host out of the loop: a UNet step is ~800 launches, each ~50 us of Python on a fast GPU).

`record(rt, fn, *inputs)` runs fn once, normally, on copies of the inputs that the recording owns, and keeps, for
every launch, a kernel object of its own with its arguments bound (and every device-to-device copy). Every array
allocated during the call comes from a memory pool private to the recording, so the buffers it reuses within the
call are reused the same way on replay and no other array ever lands in them. `Recording.replay(*inputs)` copies
new inputs into the recorded input buffers and enqueues the recorded commands in order on the runtime's queue.

What a recording assumes (the model code of sdcl.reference meets it: it only calls ops):
- what fn launches depends on its inputs' shapes and dtypes, never on their values (nothing read back to the host
  decides what runs); replay refuses inputs of another shape or dtype;
- host data uploaded inside fn (rt.to_device) is the same at every call: it is uploaded once and kept;
- weights stay in the buffers they had when the call was recorded, and the weights passed as its constants (a
  replayed model's, with keep_derived) keep their values: what a launcher derives from one of them alone
  (Runtime.derived: conv2d implicit_mma_f16's channels-last copy) is made once, while recording, and its launches
  are not replayed;
- the output lives in the recording's buffer: the next replay overwrites it (copy it to keep it).
`ReplayedModel` records a model once per input shape and replays it after (`replayed`: the UNet, per sampler step,
the text encoder, per prompt, and the VAE's decode, per image); the conformance model checks compare its replays
with plain calls at other inputs (sdcl.conformance.models).
"""

from __future__ import annotations

import functools

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pyopencl.tools as cltools


class _Allocator:
    """The recording's pool while it records; afterwards the runtime's allocator, so that arrays computed from the
    output (which carries this allocator) never land in the recording's buffers."""

    def __init__(self, rt):
        self.pool = cltools.MemoryPool(cltools.ImmediateAllocator(rt.queue))
        self.after = rt.allocator
        self.recording = True

    def __call__(self, nbytes: int):
        return self.pool(nbytes) if self.recording else self.after(nbytes)


def _held(arg):
    """A kernel argument as the replayed kernel keeps it: a memory object as a handle of its own (clRetain), so
    that the pool's block or a sub-buffer stays allocated without keeping its Python owner alive (which would stop
    the pool from reusing it within the call)."""
    if isinstance(arg, cl.MemoryObjectHolder):
        return cl.Buffer.from_int_ptr(arg.int_ptr, retain=True)
    return arg


class Recording:
    """The commands of one recorded call; `replay` runs them again on new inputs of the same shapes and dtypes."""

    def __init__(self, rt, inputs, constants=()):
        self.rt = rt
        self.constants = {_where(a) for a in constants if isinstance(a, cla.Array)}
        self.made: dict = {}       # (weight, tag) -> the array Runtime.derived made of it
        self.paused = False        # while a derived array is made: its launches run, unrecorded
        self.allocator = _Allocator(rt)
        # the input slots: arrays become device arrays the recording owns, anything else is passed as given
        self.slots = [rt.to_device(np.asarray(a)) if _is_host_array(a)
                      else _copy_of(rt, a) if isinstance(a, cla.Array) else a for a in inputs]
        self.commands = []      # (op, function, arguments, the kernel's retained buffers): enqueued in order
        self.kept = []          # arrays uploaded during the call (constants of the call)
        self.output = None
        self.uploads = []       # the last replay's host-to-device copies (NannyEvents), until the next replay

    # --- called by the runtime while recording -----------------------------------------------------------------
    def launch(self, op: str, knl, global_size, local_size, args) -> None:
        if self.paused:
            return
        k = cl.Kernel(knl.program, knl.function_name)
        bound = [_held(a) for a in args]
        k.set_args(*bound)
        self.commands.append((op, cl.enqueue_nd_range_kernel,
                              (self.rt.queue, k, tuple(global_size), None if local_size is None
                               else tuple(local_size)), bound))

    def copy(self, dst, src, src_offset: int, nbytes: int) -> None:
        if self.paused:
            return
        dst, src = _held(dst), _held(src)
        fn = functools.partial(cl.enqueue_copy, src_offset=src_offset, byte_count=nbytes)
        self.commands.append(("copy", fn, (self.rt.queue, dst, src), None))

    def keep(self, array) -> None:
        self.kept.append(array)

    def derived(self, a, tag: tuple, make):
        """Runtime.derived while recording: made once per constant weight and tag, its launches unrecorded."""
        if not isinstance(a, cla.Array) or _where(a) not in self.constants:
            return make()
        key = (_where(a), tag)
        if key not in self.made:
            # from the runtime's allocator, not the recording's pool: a block the call used and freed before this
            # point is written again by the replayed commands before it, which would overwrite what is made once
            self.paused, self.allocator.recording = True, False
            try:
                made = make()
            finally:
                self.paused, self.allocator.recording = False, True
            if made.nbytes > a.nbytes:     # a launcher's misuse: kept forms may double the weights, no more
                raise RuntimeError(f"Runtime.derived {tag}: {made.nbytes} bytes made of a weight of {a.nbytes}")
            self.made[key] = made
            self.keep(made)
        return self.made[key]

    # --- replay ----------------------------------------------------------------------------------------------
    @property
    def device_bytes(self) -> int:
        """Device memory the recording holds beyond its inputs: every buffer of its pool (a step's activations and
        scratch at their peak, the output, the uploaded constants) and what it derived from the weights."""
        return int(self.allocator.pool.managed_bytes) + sum(int(m.nbytes) for m in self.made.values())

    @property
    def launches(self) -> int:
        return sum(1 for op, *_ in self.commands if op != "copy")

    def replay(self, *inputs):
        """The recorded call on new inputs (same shapes and dtypes): the inputs are copied into the recorded input
        buffers, then every recorded command is enqueued; returns the recorded output (overwritten next time)."""
        rt = self.rt
        if len(inputs) != len(self.slots):
            raise ValueError(f"replay: recorded with {len(self.slots)} inputs, got {len(inputs)}")
        uploads = []
        for i, (slot, a) in enumerate(zip(self.slots, inputs)):
            if isinstance(slot, cla.Array):
                uploads.append(_fill(rt, i, slot, a))
            elif a is not slot and a != slot:
                raise ValueError(f"replay: input {i} was recorded as {slot!r}, got {a!r}: record the call again")
        # the host inputs' uploads do not wait (a blocking one would drain the queue: on a GPU, the sampler loop's
        # every step would wait for the last one's kernels before enqueuing its own); their events are kept until
        # the next replay (dropping a pending NannyEvent waits for its transfer: the host runs at most a call ahead)
        self.uploads = [ev for ev in uploads if ev is not None]
        events = rt.events if rt.profile else None
        for op, fn, args, _ in self.commands:
            ev = fn(*args)
            if events is not None and op != "copy":
                events.append((op, ev))
        return self.output


def _where(a) -> tuple:
    """A device array's place and form: its buffer, offset, shape and dtype (a weight seen through another view
    of other shape is another constant)."""
    return a.base_data.int_ptr, a.offset, tuple(a.shape), a.dtype.str


def _is_host_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiu"


def _copy_of(rt, a):
    slot = rt.empty(a.shape, a.dtype)
    _fill(rt, None, slot, a)
    return slot


def _fill(rt, i, slot, a):
    """Copy a host or device array into an input slot, refusing another shape or dtype; a host array's copy is
    enqueued without waiting, from a copy of it (the caller may change its array), and its event returned."""
    if not isinstance(a, cla.Array):
        a = np.asarray(a)
    if tuple(a.shape) != tuple(slot.shape) or a.dtype != slot.dtype:
        where = "" if i is None else f" {i}"
        raise ValueError(f"replay: input{where} was recorded as {slot.dtype}{tuple(slot.shape)}, got "
                         f"{a.dtype}{tuple(a.shape)}: a new shape or dtype needs a recording of its own")
    if isinstance(a, cla.Array):
        if not a.flags.c_contiguous:
            raise ValueError(f"replay: input{'' if i is None else f' {i}'} must be contiguous")
        if a.nbytes:
            rt.copy(slot.data, a.base_data, a.offset, a.nbytes)
    elif a.size:
        return cl.enqueue_copy(rt.queue, slot.data, np.array(a, order="C"), is_blocking=False)
    return None


def record(rt, fn, *inputs, constants=()) -> tuple:
    """(Recording, fn's output): fn(*inputs) run once while its launches are recorded. Inputs that are arrays
    (host or device) are copied into buffers the recording owns and passed to fn in their place; fn must return
    one device array. constants: device arrays (the model's weights) whose values the replays may assume (see the
    module's text)."""
    if rt.recording is not None:
        raise RuntimeError("record: this runtime is already recording a call")
    if rt.guard_bytes:
        raise RuntimeError("record: the runtime is in the conformance gate's guarded mode")
    rec = Recording(rt, inputs, constants)
    rt.recording, rt.allocator = rec, rec.allocator
    try:
        out = fn(*rec.slots)
    finally:
        rt.recording, rt.allocator = None, rec.allocator.after
        rec.allocator.recording = False
    if not isinstance(out, cla.Array):
        raise TypeError(f"record: the recorded call must return one device array, got {type(out).__name__}")
    rec.output = out
    return rec, out


class ReplayedModel:
    """A model called many times with inputs of one shape (the UNet of a sampler loop): recorded on its first call
    for each input signature, replayed after. `prepare(*args) -> inputs` turns a call's arguments into the arrays
    and values the model is recorded over (the UNet's host timestep becomes a device input); other attributes are
    the model's."""

    def __init__(self, rt, model, prepare=None, keep_derived: bool = False):
        self.rt, self.model, self.prepare = rt, model, prepare or (lambda *a: a)
        self.keep_derived = keep_derived
        self.recordings: dict = {}

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args):
        inputs = self.prepare(*args)
        key = tuple((tuple(a.shape), np.dtype(a.dtype).str) if hasattr(a, "shape") else ("value", a)
                    for a in inputs)
        rec = self.recordings.get(key)
        if rec is None:
            weights = getattr(self.model, "w", None)
            rec, out = record(self.rt, self.model, *inputs, constants=weights.values()
                              if self.keep_derived and isinstance(weights, dict) else ())
            self.recordings[key] = rec
            return out
        return rec.replay(*inputs)


class ReplayedDecoder(ReplayedModel):
    """A VAE whose decode (its __call__) is recorded per latent shape and replayed; encode and the rest are the
    VAE's own."""

    def decode(self, z):
        return self(z)


def replayed(rt, model, keep_derived: bool = False):
    """A model the pipeline calls again and again at one input shape, recorded once per shape and replayed after:
    the UNet (each sampler step), the text encoder (each prompt) and the VAE's decode (each image); a model whose
    weights stream (sdcl.opencl_impl.streaming: a recording would keep every weight it uploads) or of another kind
    as it is. keep_derived: its weights are the recordings' constants, so what a launcher derives from one alone is
    made once and kept (Runtime.derived): faster replays for a second copy of those weights (H100, SD 2.1-base 512
    in float16: the 3x3 convolutions' channels-last copies, 1.19 GB, took 1.69 ms of a 23.8 ms UNet step's
    kernels)."""
    from sdcl.opencl_impl.streaming import StreamingWeights
    from sdcl.reference.text_encoder import TextEncoder
    from sdcl.reference.unet import UNet
    from sdcl.reference.vae import VAE
    if isinstance(getattr(model, "w", None), StreamingWeights):
        return model
    if isinstance(model, UNet):
        return replayed_unet(rt, model, keep_derived)
    if isinstance(model, TextEncoder):
        return replayed_text_encoder(rt, model, keep_derived)
    if isinstance(model, VAE):
        return ReplayedDecoder(rt, model, keep_derived=keep_derived)
    return model


def replayed_text_encoder(rt, text_encoder, keep_derived: bool = False):
    """The text encoder recorded per ids shape, the token ids an input of the recording (the int64 array the
    token_embedding kernel reads, checked on the host at every call as an unrecorded call checks them); `replayed`
    calls it for a text encoder whose weights do not stream."""
    from sdcl.opencl_impl.ops import check_token_ids
    from sdcl.reference.text_encoder import PREFIX
    w = text_encoder.w

    def prepare(ids):
        return (check_token_ids(ids, w[f"{PREFIX}embeddings.token_embedding.weight"],
                                w[f"{PREFIX}embeddings.position_embedding.weight"]),)

    return ReplayedModel(rt, text_encoder, prepare, keep_derived)


def replayed_unet(rt, unet, keep_derived: bool = False):
    """The UNet recorded per (sample, context) shape, its timesteps an input of the recording (a host timestep
    becomes the (N,) array the UNet would make of it, in the UNet's timestep dtype). A UNet whose weights stream
    (sdcl.opencl_impl.streaming) is returned as it is: a recording would keep every weight it uploads."""
    from sdcl.opencl_impl.streaming import StreamingWeights
    if isinstance(unet.w, StreamingWeights):
        return unet

    def prepare(sample, timestep, encoder_hidden_states):
        return sample, unet.timesteps(timestep, sample.shape[0]), encoder_hidden_states

    return ReplayedModel(rt, unet, prepare, keep_derived)
