"""Skeleton augmentations of HiCLR: small batched ops with one contract.

    params = op.draw(n, generator, like)   # every random number for n samples, a dict of tensors
    y = op.apply(x, params)                # deterministic given params
    y = op(x, generator)                   # both; with record=True, op.last holds the params

Each op declares a ``kind``, from which the growing policy plans a view; ``register_augmentation(name)``
adds an op to ``AUGMENTATIONS`` (the names the YAML policy uses). Contract and kinds: docs/internals.md,
'Augmentation'; the release's quirks and their flags: docs/method.md, 'The reference's quirks'.
"""

from __future__ import annotations

import math

import torch

from hiclr.registry import Registry

__all__ = [
    "Augmentation",
    "TemporalCrop",
    "Shear",
    "SpatialFlip",
    "Rotate",
    "GaussianNoise",
    "GaussianBlur",
    "AxisMask",
    "JointMask",
    "SkeleAdaIN",
    "apply_matrix",
    "take_indices",
    "NTU_FLIP_ORDER",
    "AUGMENTATIONS",
    "KINDS",
    "register_augmentation",
    "device_constant",
]

KINDS = ("index", "linear", "values", "model_side", "general")

# Left/right joint swap of NTU RGB+D (0-based): 1-based 5-8 <-> 9-12, 13-16 <-> 17-20,
# 22-23 <-> 24-25; every other joint keeps its place.
NTU_FLIP_ORDER = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22)

AUGMENTATIONS = Registry("augmentation")


def register_augmentation(name: str):
    """Class decorator: make an augmentation buildable by ``name`` in a policy's YAML."""

    def check(cls):
        if cls.kind not in KINDS and not isinstance(cls.kind, property):
            raise ValueError(f"augmentation {name!r}: kind must be one of {', '.join(KINDS)}")

    return AUGMENTATIONS.register(name, check=check)


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def device_constant(key: tuple, device: torch.device | str, build) -> torch.Tensor:
    """The tensor ``build()`` (made on the CPU from Python data), copied to ``device`` on first use
    and kept under ``key``: a training step then reads it without a host-to-device copy, which
    would wait for the device. Treat it as read-only."""
    device = torch.device(device)
    tensor = _CONSTANTS.get((key, device))
    if tensor is None:
        tensor = _CONSTANTS[(key, device)] = build().to(device)
    return tensor


def apply_matrix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x' = A x`` for every joint: matrix ``(B, 3, 3)``, x ``(B, C=3, T, V, M)``.

    One batched matmul on the ``(B, C, T*V*M)`` view of ``x`` (no permuted copies)."""
    B, C = x.shape[:2]
    return torch.bmm(matrix.to(x.dtype), x.reshape(B, C, -1)).view(x.shape)


def take_indices(x: torch.Tensor, params: dict, source: torch.Tensor | None = None) -> torch.Tensor:
    """The gather of an index op: output row i is row ``source[i]`` of ``x`` (default: row i) at
    frames ``params["time_index"][i]`` and joints ``params["joint_order"][i]`` (where given)."""
    time_index, joint_order = params.get("time_index"), params.get("joint_order")
    if source is not None or time_index is not None:
        n = len(source) if source is not None else x.shape[0]
        if source is None:
            source = torch.arange(n, device=x.device)
        if time_index is None:
            time_index = torch.arange(x.shape[2], device=x.device).expand(n, -1)
        x = _take_frames(x, source, time_index)
    if joint_order is None:
        return x.clone() if source is None and time_index is None else x
    return x.gather(3, joint_order[:, None, None, :, None].expand(x.shape))


def _take_frames(x: torch.Tensor, source: torch.Tensor, time_index: torch.Tensor) -> torch.Tensor:
    """``out[n, :, t] = x[source[n], :, time_index[n, t]]``: (N,) and (N, L) -> (N, C, L, V, M),
    copying whole (V, M) frames in one indexing pass."""
    B, C, T, V, M = x.shape
    N, L = time_index.shape
    rows = (source[:, None] * C + torch.arange(C, device=x.device)).reshape(N * C, 1)
    frames = x.contiguous().view(B * C, T, V * M)[rows, time_index.repeat_interleave(C, dim=0)]
    return frames.view(N, C, L, V, M)


def _uniform(shape, low, high, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype) * (high - low) + low


def _bernoulli(batch: int, p: float, generator, device) -> torch.Tensor:
    """(B,) bool, True with probability p (drawn even when p is 0 or 1: the stream stays fixed)."""
    return torch.rand(batch, generator=generator, device=device) < p


class Augmentation:
    """Base class: ``draw(n, generator, like) -> params``, ``apply(x, params) -> x``.

    Attributes the policy reads:
    - ``kind``: one of ``KINDS`` (see the module docstring).
    - ``commutes_with_linear``: True when the op commutes with any per-joint linear map
      ``x -> A x`` (same A for all joints and frames of a sample), so a pending matrix may be
      applied after it. Index and model-side ops do; linear ops compose instead.
    - ``shared_across_batch``: True when one draw serves the whole batch (the policy then draws
      once per view, never across views concatenated along the batch); all params per sample.
    - ``not_recorded``: params that are not to be kept per view (e.g. the noise itself, or what
      the planned path reads besides the recorded draw), left out of ``last`` and of a view's record.
    """

    kind = "general"
    shared_across_batch = False
    not_recorded: tuple[str, ...] = ()

    def __init__(self, record: bool = False):
        self.record = record
        self.last: dict[str, torch.Tensor] = {}

    @property
    def commutes_with_linear(self) -> bool:
        return self.kind in ("index", "model_side")

    def draw(self, n: int, generator: torch.Generator, like: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The shared application of the planned kinds; a ``general`` op overrides it."""
        if self.kind == "index":
            y = take_indices(x, params)
            return apply_matrix(params["matrix"], y) if "matrix" in params else y
        if self.kind == "linear":
            return apply_matrix(params["matrix"], x)
        if self.kind == "values":
            return self.apply_(x.clone(), params)
        if self.kind == "model_side":
            return x
        raise NotImplementedError(f"{type(self).__name__} must implement apply")

    def apply_(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """``values`` ops: ``apply`` in place on ``x`` (which the caller owns)."""
        raise NotImplementedError

    def plannable(self, shape: torch.Size) -> bool:
        """Whether the policy's planned path may run this op on a batch of ``shape``."""
        return self.kind != "general"

    def singular(self, params: dict) -> torch.Tensor | None:
        """(n,) bool where the op leaves a view without an inverse map (None: never)."""
        return None

    def joint_orders(self, V: int) -> tuple[tuple[int, ...], ...] | None:
        """An index op giving ``joint_order`` may list, on the host, every order it can draw on V
        joints; its params then also hold ``joint_choice`` (n,) int64, the place of each row's order
        in that list, and the policy's planned path permutes the clip once per listed order
        without reading the draw. None (default): any order; each row's joints are gathered."""
        return None

    def recorded(self, params: dict) -> dict[str, torch.Tensor]:
        return {k: v for k, v in params.items() if k not in self.not_recorded}

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        params = self.draw(x.shape[0], generator, x)
        self.last = self.recorded(params) if self.record else {}
        return self.apply(x, params)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


@register_augmentation("temporal_crop")
class TemporalCrop(Augmentation):
    """Random temporal window of a mirror-padded clip (BA); optional crop-resize variant.

    ``mode="crop"`` (reference, an index op): pad ``T // padding_ratio`` frames at each end by
    mirroring the clip including its edge frame (frames ``p-1 .. 0`` before, ``T-1 .. T-p`` after,
    as the reference's ``[::-1]`` concatenation does), then take a window of ``size`` (default T)
    frames starting at offset ``U{0 .. 2p}`` (inclusive) in padded coordinates.
    ``mode="crop_resize"``: a window of ``round(scale * T)`` frames, ``scale ~ U(scale_range)``, at
    a uniform offset inside the clip, linearly resampled (half-pixel centres) to ``size`` frames.

    Params ``offset`` (B,) (crop: start in padded frames; crop_resize: start frame, float),
    ``time_index`` (B, size) (source frame of every output frame; float for crop_resize) and,
    for crop_resize, ``scale`` (B,) (= source frames per output frame).
    """

    commutes_with_linear = True

    def __init__(
        self,
        padding_ratio: int = 6,
        size: int | None = None,
        mode: str = "crop",
        scale_range: tuple[float, float] = (0.5, 1.0),
        record: bool = False,
    ):
        super().__init__(record)
        if mode not in ("crop", "crop_resize"):
            raise ValueError(f"TemporalCrop mode must be 'crop' or 'crop_resize', not {mode!r}")
        self.padding_ratio, self.size, self.mode = padding_ratio, size, mode
        self.scale_range = tuple(float(s) for s in scale_range)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "index" if self.mode == "crop" else "general"

    def extra_repr(self) -> str:
        return f"padding_ratio={self.padding_ratio}, size={self.size}, mode={self.mode!r}"

    def plannable(self, shape) -> bool:
        return self.mode == "crop" and (self.size or shape[2]) == shape[2]

    def draw(self, n, generator, like):
        T, device = like.shape[2], like.device
        size = self.size or T
        if self.mode == "crop_resize":
            lo, hi = self.scale_range
            scale = _uniform(n, lo, hi, generator, device)
            length = (scale * T).round().clamp(1, T)
            offset = (torch.rand(n, generator=generator, device=device) * (T - length + 1)).floor()
            step = length / size
            pos = offset[:, None] + (torch.arange(size, device=device) + 0.5) * step[:, None] - 0.5
            pos = torch.minimum(pos.clamp(min=0), (offset + length - 1)[:, None])
            return {"offset": offset, "time_index": pos, "scale": step}
        pad = T // self.padding_ratio if self.padding_ratio > 0 else 0
        mirror = device_constant(
            ("mirror_padded_frames", T, pad),
            device,
            lambda: torch.cat([torch.arange(pad - 1, -1, -1), torch.arange(T), torch.arange(T - 1, T - 1 - pad, -1)]),
        )
        high = mirror.numel() - size  # last valid start
        if high < 0:
            raise ValueError(f"TemporalCrop size {size} exceeds padded length {mirror.numel()}")
        offset = torch.randint(0, high + 1, (n,), generator=generator, device=device)
        return {"offset": offset, "time_index": mirror[offset[:, None] + torch.arange(size, device=device)]}

    def apply(self, x, params):
        if self.mode == "crop":
            return super().apply(x, params)
        T = x.shape[2]
        source = torch.arange(x.shape[0], device=x.device)
        pos = params["time_index"]
        left = pos.floor().long()
        right = (left + 1).clamp(max=T - 1)
        w = (pos - left).to(x.dtype)[:, None, :, None, None]
        return _take_frames(x, source, left) * (1 - w) + _take_frames(x, source, right) * w


@register_augmentation("shear")
class Shear(Augmentation):
    """``x' = H x``, ``H = I`` plus off-diagonals i.i.d. ``U(-amplitude, amplitude)`` per sample (BA).

    Params ``matrix`` (B, 3, 3) = H. H can be singular only on a set of measure zero; it is
    ill-conditioned near the corners of the box, so invert it in float64 when precision matters.
    """

    kind = "linear"

    def __init__(self, amplitude: float = 0.5, record: bool = False):
        super().__init__(record)
        self.amplitude = float(amplitude)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}"

    def draw(self, n, generator, like):
        device, dtype = like.device, like.dtype
        off = _uniform((n, 6), -self.amplitude, self.amplitude, generator, device, dtype).unbind(1)
        one = torch.ones_like(off[0])
        # row by row: the off-diagonals (0,1) (0,2) (1,0) (1,2) (2,0) (2,1) take off[0..5]
        entries = (one, off[0], off[1], off[2], one, off[3], off[4], off[5], one)
        return {"matrix": torch.stack(entries, 1).view(n, 3, 3)}


@register_augmentation("spatial_flip")
class SpatialFlip(Augmentation):
    """Left/right flip with probability p (NA), an index op.

    Reference: only the joint indices are swapped (``NTU_FLIP_ORDER``), coordinates are not
    mirrored. ``mirror=True`` also negates coordinate ``axis`` (x by default), a true reflection,
    given as ``matrix`` diag(+-1) (identity where not flipped). Params ``flipped`` (B,) bool, the
    per-sample ``joint_order`` and ``joint_choice`` (0: identity, 1: ``order``) (not recorded).
    """

    kind = "index"
    not_recorded = ("joint_order", "joint_choice")

    def __init__(
        self,
        p: float = 0.5,
        mirror: bool = False,
        axis: int = 0,
        order: tuple[int, ...] = NTU_FLIP_ORDER,
        record: bool = False,
    ):
        super().__init__(record)
        self.p, self.mirror, self.axis = float(p), bool(mirror), int(axis)
        self.order = tuple(order)

    def extra_repr(self) -> str:
        return f"p={self.p}, mirror={self.mirror}"

    def plannable(self, shape) -> bool:
        return len(self.order) == shape[3]

    def joint_orders(self, V):
        return (tuple(range(V)), self.order)

    def draw(self, n, generator, like):
        device, dtype = like.device, like.dtype
        flipped = _bernoulli(n, self.p, generator, device)
        identity = torch.arange(len(self.order), device=device)
        order = device_constant(("joint_order", self.order), device, lambda: torch.tensor(self.order))
        params = {
            "flipped": flipped,
            "joint_order": torch.where(flipped[:, None], order, identity),
            "joint_choice": flipped.long(),
        }
        if self.mirror:
            sign = torch.ones(n, 3, device=device, dtype=dtype)
            sign[:, self.axis] = 1 - 2 * flipped.to(dtype)  # -1 where flipped
            params["matrix"] = torch.diag_embed(sign)
        return params


def _axis_rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations about one axis, in the reference's sign convention (x' = R x)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, s], [zero, -s, c]]
    elif axis == 1:
        rows = [[c, zero, -s], [zero, one, zero], [s, zero, c]]
    else:
        rows = [[c, s, zero], [-s, c, zero], [zero, zero, one]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


@register_augmentation("rotate")
class Rotate(Augmentation):
    """Rotation about x, then y, then z (NA): ``A = Rz Ry Rx``.

    Per sample one axis, chosen uniformly, gets an angle from ``U(0, max_angle)`` degrees and the
    two others ``U(0, minor_angle)`` (reference: positive angles only); ``symmetric=True`` draws
    from ``U(-a, a)`` instead. Params ``axis`` (B,), ``angles`` (B, 3) in degrees, ``matrix``.
    """

    kind = "linear"

    def __init__(
        self, max_angle: float = 30.0, minor_angle: float = 1.0, symmetric: bool = False, record: bool = False
    ):
        super().__init__(record)
        self.max_angle, self.minor_angle = float(max_angle), float(minor_angle)
        self.symmetric = bool(symmetric)

    def extra_repr(self) -> str:
        return f"max_angle={self.max_angle}, minor_angle={self.minor_angle}, symmetric={self.symmetric}"

    def draw(self, n, generator, like):
        device, dtype = like.device, like.dtype
        axis = torch.randint(0, 3, (n,), generator=generator, device=device)
        u = torch.rand(n, 3, generator=generator, device=device, dtype=dtype)
        if self.symmetric:
            u = 2 * u - 1
        main = axis[:, None] == torch.arange(3, device=device)  # one-hot, bool
        angles = u * torch.where(main, self.max_angle, self.minor_angle).to(dtype)
        rad = angles * (math.pi / 180.0)
        A = _axis_rotation(2, rad[:, 2]) @ _axis_rotation(1, rad[:, 1]) @ _axis_rotation(0, rad[:, 0])
        return {"axis": axis, "angles": angles, "matrix": A}


@register_augmentation("gaussian_noise")
class GaussianNoise(Augmentation):
    """Additive i.i.d. Gaussian noise ``N(mean, std)`` with probability p per sample (NA).

    Noise is drawn for every sample, so that the draw's size does not depend on which samples are
    chosen (no host-device synchronisation), and added where ``applied``. Params ``applied`` (B,)
    bool; ``noise`` (B, C, T, V, M) in units of std (not recorded).
    """

    kind = "values"
    not_recorded = ("noise",)

    def __init__(self, p: float = 0.5, std: float = 0.01, mean: float = 0.0, record: bool = False):
        super().__init__(record)
        self.p, self.std, self.mean = float(p), float(std), float(mean)

    def extra_repr(self) -> str:
        return f"p={self.p}, std={self.std}"

    def draw(self, n, generator, like):
        applied = _bernoulli(n, self.p, generator, like.device)
        noise = torch.randn((n, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)
        if self.mean:
            noise = noise + self.mean / self.std
        return {"applied": applied, "noise": noise}

    def apply_(self, x, params):
        """``x += std * noise`` on the applied samples (the others gain exactly 0)."""
        scale = (params["applied"].to(x.dtype) * self.std).view(-1, *(1,) * (x.dim() - 1))
        return x.addcmul_(params["noise"], scale)


@register_augmentation("gaussian_blur")
class GaussianBlur(Augmentation):
    """Temporal Gaussian blur with probability p per sample, zero padding (NA).

    Kernel ``k_i = exp(-i^2 / (2 sigma^2))`` for ``i = -r .. r`` (``r = kernel_size // 2``),
    ``sigma ~ U(sigma_range)`` per sample. The reference does NOT normalise the kernel, so the
    signal is scaled by ``sum(k)`` (up to about 5x); ``normalize=True`` divides by the sum.
    Implemented as one batched (T x T) banded matmul over every sample (no host-device
    synchronisation), the samples not applied with the identity. Params ``sigma``, ``applied``,
    ``kernel_sum`` (B,).
    """

    kind = "values"
    commutes_with_linear = True  # the same temporal filter on every channel

    def __init__(
        self,
        p: float = 0.5,
        kernel_size: int = 15,
        sigma: tuple[float, float] = (0.1, 2.0),
        normalize: bool = False,
        record: bool = False,
    ):
        super().__init__(record)
        if kernel_size % 2 != 1:
            raise ValueError(f"GaussianBlur kernel_size must be odd, not {kernel_size}")
        self.p, self.kernel_size, self.normalize = float(p), int(kernel_size), bool(normalize)
        self.sigma = tuple(float(s) for s in sigma)

    def extra_repr(self) -> str:
        return f"p={self.p}, kernel_size={self.kernel_size}, sigma={self.sigma}, normalize={self.normalize}"

    def kernels(self, sigma: torch.Tensor) -> torch.Tensor:
        """(B, kernel_size) kernels for per-sample sigmas (B,)."""
        r = self.kernel_size // 2
        i = torch.arange(-r, r + 1, device=sigma.device, dtype=sigma.dtype)
        k = torch.exp(-(i**2) / (2 * sigma[:, None] ** 2))
        return k / k.sum(1, keepdim=True) if self.normalize else k

    def draw(self, n, generator, like):
        sigma = _uniform(n, *self.sigma, generator, like.device, like.dtype)
        applied = _bernoulli(n, self.p, generator, like.device)
        return {"sigma": sigma, "applied": applied, "kernel_sum": self.kernels(sigma).sum(1)}

    def apply_(self, x, params):
        """Blurs the applied samples of ``x`` in place. One batched (T x T) banded matmul over all
        samples; the others take the identity kernel (a finite clip keeps its values exactly)."""
        B, C, T, V, M = x.shape
        r = self.kernel_size // 2
        k = self.kernels(params["sigma"]).to(x.dtype)
        identity = torch.arange(k.shape[1], device=x.device) == r
        k = torch.where(params["applied"][:, None], k, identity.to(x.dtype))
        k = k[:, None].expand(B, C, k.shape[1]).reshape(B * C, k.shape[1])  # one per (sample, channel)
        # banded Toeplitz W[b, t, s] = k[b, s - t + r] for |s - t| <= r (zero padding built in),
        # one per (sample, channel) for a plain bmm: a Hankel view of the zero-padded kernel,
        # H[b, t, u] = q[b, t + u + r] = W[b, t, T - 1 - u], then flipped along its last axis
        q = x.new_zeros(k.shape[0], 2 * T - 1 + 2 * r)
        q[:, T - 1 : T + 2 * r] = k.flip(1)
        W = q.as_strided((k.shape[0], T, T), (q.shape[1], 1, 1), r).flip(2)
        return x.copy_(torch.bmm(W, x.reshape(B * C, T, V * M)).view(x.shape))


@register_augmentation("axis_mask")
class AxisMask(Augmentation):
    """With probability p, one coordinate axis (uniform over x, y, z) is zeroed for the whole clip (NA).

    Singular: a masked view has no inverse map. Params ``axis`` (B,), ``applied`` (B,) bool.
    """

    kind = "values"

    def __init__(self, p: float = 0.5, record: bool = False):
        super().__init__(record)
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def draw(self, n, generator, like):
        applied = _bernoulli(n, self.p, generator, like.device)
        axis = torch.randint(0, like.shape[1], (n,), generator=generator, device=like.device)
        return {"axis": axis, "applied": applied}

    def apply_(self, x, params):
        """Zeros the drawn axis of the applied samples, in place."""
        B, C = x.shape[:2]
        hit = params["applied"][:, None] & (params["axis"][:, None] == torch.arange(C, device=x.device))
        x.view(B, C, -1).masked_fill_(hit[:, :, None], 0.0)
        return x

    def singular(self, params):
        return params["applied"]


@register_augmentation("joint_mask")
class JointMask(Augmentation):
    """Random joint mask (S): in every frame, ``int(V * ratio)`` distinct joints are masked, for
    both persons and all channels.

    Model-side: the data are returned unchanged, the learnable mask token lives in the model, which
    fills the masked places given by params ``mask`` (B, 1, T, V, 1) (True = masked).
    Reference: ONE mask for the whole batch (``shared_across_batch``); ``per_sample=True`` draws
    one per sample.
    """

    kind = "model_side"

    def __init__(self, ratio: float = 0.1, per_sample: bool = False, record: bool = False):
        super().__init__(record)
        self.ratio, self.per_sample = float(ratio), bool(per_sample)

    @property
    def shared_across_batch(self) -> bool:  # type: ignore[override]
        return not self.per_sample

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, per_sample={self.per_sample}"

    def draw(self, n, generator, like):
        T, V = like.shape[2], like.shape[3]
        count = int(V * self.ratio)
        groups = n if self.per_sample else 1
        scores = torch.rand(groups, T, V, generator=generator, device=like.device)
        chosen = scores.argsort(dim=-1)[..., :count]  # a uniform random subset of `count` joints
        mask = torch.zeros(groups, T, V, dtype=torch.bool, device=like.device)
        mask.scatter_(-1, chosen, True)
        return {"mask": mask[:, None, :, :, None].expand(n, 1, T, V, 1)}


@register_augmentation("skele_adain")
class SkeleAdaIN(Augmentation):
    """SkeleAdaIN (S): every sample takes the per-channel "style" (mean, std) of another sample.

    For every (sample, person) and channel, ``x`` is normalised by its own mean and standard
    deviation over (T, V) and rescaled with those of its partner, the same person slot of the
    batch rolled by ``n ~ U{1 .. N-2}`` (the reference's recipe: partner of sample i is
    ``(i - n) mod N``, i.e. ``torch.roll(x, n, 0)[i]``)::

        y = (x - mean_i) / std_i * std_p + mean_p,   std = sqrt(var + eps), var unbiased

    ``dim="V"`` normalises over the joints only, per frame (statistics per (sample, channel,
    frame, person)). One offset per batch, so the op is ``shared_across_batch``: concatenated
    views each roll within their own block. A batch of 2 uses n = 1, a batch of 1 its own style
    (``y = x`` up to rounding). Params ``offset`` (B,) (the same n in every row), ``partner``
    (B,) (index of the partner in the batch); ``shift`` (B,) = partner - row (not recorded) is
    what ``apply_`` reads, so the draw stays valid for the rows of concatenated views.
    """

    kind = "values"
    shared_across_batch = True
    not_recorded = ("shift",)

    def __init__(self, dim: str = "TV", eps: float = 1e-5, record: bool = False):
        super().__init__(record)
        if dim not in ("TV", "V"):
            raise ValueError(f"SkeleAdaIN dim must be 'TV' or 'V', not {dim!r}")
        self.dim, self.eps = dim, float(eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim!r}, eps={self.eps}"

    def draw(self, n, generator, like):
        device = like.device
        high = max(n - 2, 1) if n > 1 else 0  # the last valid offset, inclusive
        offset = torch.randint(min(1, high), high + 1, (1,), generator=generator, device=device)
        rows = torch.arange(n, device=device)
        partner = (rows - offset) % n
        return {"offset": offset.expand(n).clone(), "partner": partner, "shift": partner - rows}

    def stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of ``x`` (B, C, T, V, M) over (T, V) or V, kept as broadcastable dims."""
        dims = (2, 3) if self.dim == "TV" else (3,)
        var, mean = torch.var_mean(x, dim=dims, keepdim=True)  # unbiased, as torch.var
        return mean, (var + self.eps).sqrt()

    def apply_(self, x, params):
        """Restyles every row of ``x`` in place; all statistics are taken before any write."""
        mean, std = self.stats(x)
        source = torch.arange(x.shape[0], device=x.device) + params["shift"]
        scale = std.index_select(0, source) / std
        x.sub_(mean).mul_(scale).add_(mean.index_select(0, source))
        return x
