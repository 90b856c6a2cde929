"""Skeleton augmentations of HiCLR as small batched objects with explicit parameters.

Every augmentation takes a batch ``x`` of shape ``(B, C, T, V, M)`` and an explicit
``torch.Generator`` (on ``x.device``) and draws every random number from that generator only, so
that two CPU runs with the same seed give identical numbers. Parameters are drawn per sample
with batched tensor ops; there is no per-sample Python loop.

With ``record=True`` an augmentation keeps what it drew in ``self.last`` (a dict of tensors with
a leading batch dimension): matrices, crop offsets, flips, axes, sigmas, masks.

Defaults reproduce the reference release, quirks included;
each quirk has a flag that fixes it (``SpatialFlip(mirror=True)``, ``Rotate(symmetric=True)``,
``GaussianBlur(normalize=True)``, ``JointMask(per_sample=True)``).

Geometric augmentations (``Shear``, ``Rotate``, and ``SpatialFlip(mirror=True)``) act on each joint
as ``x' = A x`` and report the per-sample ``A`` (``last["matrix"]``, ``(B, 3, 3)``), so that an
equivariant objective can map embeddings back with ``A^-1``.  ``transform(x, g,
defer_linear=True)`` returns that matrix without applying it, which lets the policy compose
consecutive linear maps into one matmul.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "Augmentation", "TemporalCrop", "Shear", "SpatialFlip", "Rotate", "GaussianNoise",
    "GaussianBlur", "AxisMask", "JointMask", "apply_matrix", "NTU_FLIP_ORDER", "AUGMENTATIONS",
]

# Left/right joint swap of NTU RGB+D (0-based): 1-based 5-8 <-> 9-12, 13-16 <-> 17-20,
# 22-23 <-> 24-25; every other joint keeps its place.
NTU_FLIP_ORDER = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15,
                  20, 23, 24, 21, 22)


def apply_matrix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x' = A x`` for every joint: matrix ``(B, 3, 3)``, x ``(B, C=3, T, V, M)``.

    One batched matmul on the ``(B, C, T*V*M)`` view of ``x`` (no permuted copies)."""
    B, C = x.shape[:2]
    return torch.bmm(matrix.to(x.dtype), x.reshape(B, C, -1)).view(x.shape)


def _uniform(shape, low, high, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype) * (high - low) + low


def _bernoulli(batch: int, p: float, generator, device) -> torch.Tensor:
    """(B,) bool, True with probability p (drawn even when p is 0 or 1: the stream stays fixed)."""
    return torch.rand(batch, generator=generator, device=device) < p


class Augmentation:
    """Base class: ``aug(x, generator) -> x``; ``aug.last`` holds the draws when recording.

    Class attributes the policy reads:
    - ``commutes_with_linear``: True when the op commutes with any per-joint linear map
      ``x -> A x`` (same A for all joints and frames of a sample), so a pending matrix may be
      applied after it.
    - ``shared_across_batch``: True when one draw is shared by the whole batch (then the policy
      calls it once per view, never on views concatenated along the batch).
    """

    commutes_with_linear = False
    shared_across_batch = False

    def __init__(self, record: bool = False):
        self.record = record
        self.last: dict[str, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.transform(x, generator)[0]

    def transform(self, x: torch.Tensor, generator: torch.Generator,
                  defer_linear: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns ``(x', A)``: A is the per-sample linear map of a geometric op (None otherwise).

        With ``defer_linear=True`` a geometric op returns ``x`` with A NOT applied yet; the caller
        must apply it (ops that do not commute with linear maps must come after that).
        """
        raise NotImplementedError

    def _keep(self, **draws: torch.Tensor) -> None:
        self.last = dict(draws) if self.record else {}

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class TemporalCrop(Augmentation):
    """Random temporal window of a mirror-padded clip (BA); optional crop-resize variant.

    ``mode="crop"`` (reference): pad ``T // padding_ratio`` frames at each end by mirroring the
    clip including its edge frame (frames ``p-1 .. 0`` before, ``T-1 .. T-p`` after, as the
    reference's ``[::-1]`` concatenation does), then take a window of ``size`` (default T) frames
    starting at offset ``U{0 .. 2p}`` (inclusive) in padded coordinates.
    ``mode="crop_resize"``: a window of ``round(scale * T)`` frames, ``scale ~ U(scale_range)``, at
    a uniform offset inside the clip, linearly resampled (half-pixel centres) to ``size`` frames.

    Records ``offset`` (B,) (crop: start in padded frames; crop_resize: start frame, float),
    ``time_index`` (B, size) (source frame of every output frame; float for crop_resize) and,
    for crop_resize, ``scale`` (B,) (= source frames per output frame).
    """

    commutes_with_linear = True

    def __init__(self, padding_ratio: int = 6, size: int | None = None, mode: str = "crop",
                 scale_range: tuple[float, float] = (0.5, 1.0), record: bool = False):
        super().__init__(record)
        if mode not in ("crop", "crop_resize"):
            raise ValueError(f"TemporalCrop mode must be 'crop' or 'crop_resize', not {mode!r}")
        self.padding_ratio, self.size, self.mode = padding_ratio, size, mode
        self.scale_range = tuple(float(s) for s in scale_range)

    def extra_repr(self) -> str:
        return f"padding_ratio={self.padding_ratio}, size={self.size}, mode={self.mode!r}"

    def transform(self, x, generator, defer_linear=False):
        return self.transform_repeated(x, 1, generator)

    def draw_crop(self, n: int, T: int, generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``mode="crop"`` draws for n samples of T frames: ``(offset (n,), time_index (n, size))``
        (kept in ``last`` when recording); the data are not touched."""
        size = self.size or T
        pad = T // self.padding_ratio if self.padding_ratio > 0 else 0
        mirror = torch.cat([torch.arange(pad - 1, -1, -1, device=device),
                            torch.arange(T, device=device),
                            torch.arange(T - 1, T - 1 - pad, -1, device=device)])
        high = mirror.numel() - size  # last valid start
        if high < 0:
            raise ValueError(f"TemporalCrop size {size} exceeds padded length {mirror.numel()}")
        offset = torch.randint(0, high + 1, (n,), generator=generator, device=device)
        time_index = mirror[offset[:, None] + torch.arange(size, device=device)]
        self._keep(offset=offset, time_index=time_index)
        return offset, time_index

    def transform_repeated(self, x, repeats: int, generator):
        """Crops of ``x.repeat(repeats, 1, 1, 1, 1)`` (independent draws) without building the
        repeated batch: the policy uses it to start concatenated views in one pass."""
        B, C, T, V, M = x.shape
        N, size, device = B * repeats, self.size or T, x.device
        source = torch.arange(N, device=device) % B
        if self.mode == "crop":
            _, time_index = self.draw_crop(N, T, generator, device)
            return _take_frames(x, source, time_index), None
        lo, hi = self.scale_range
        scale = _uniform(N, lo, hi, generator, device)
        length = (scale * T).round().clamp(1, T)
        offset = (torch.rand(N, generator=generator, device=device) * (T - length + 1)).floor()
        step = length / size
        pos = offset[:, None] + (torch.arange(size, device=device) + 0.5) * step[:, None] - 0.5
        pos = torch.minimum(pos.clamp(min=0), (offset + length - 1)[:, None])
        left = pos.floor().long()
        right = (left + 1).clamp(max=T - 1)
        w = (pos - left).to(x.dtype)[:, None, :, None, None]
        out = _take_frames(x, source, left) * (1 - w) + _take_frames(x, source, right) * w
        self._keep(offset=offset, time_index=pos, scale=step)
        return out, None


def _take_frames(x: torch.Tensor, source: torch.Tensor, time_index: torch.Tensor) -> torch.Tensor:
    """``out[n, :, t] = x[source[n], :, time_index[n, t]]``: (N,) and (N, L) -> (N, C, L, V, M),
    copying whole (V, M) frames in one indexing pass."""
    B, C, T, V, M = x.shape
    N, L = time_index.shape
    rows = (source[:, None] * C + torch.arange(C, device=x.device)).reshape(N * C, 1)
    frames = x.contiguous().view(B * C, T, V * M)[rows, time_index.repeat_interleave(C, dim=0)]
    return frames.view(N, C, L, V, M)


class Shear(Augmentation):
    """``x' = H x``, ``H = I`` plus off-diagonals i.i.d. ``U(-amplitude, amplitude)`` per sample (BA).

    Records ``matrix`` (B, 3, 3) = H. H can be singular only on a set of measure zero; it is
    ill-conditioned near the corners of the box, so invert it in float64 when precision matters.
    """

    def __init__(self, amplitude: float = 0.5, record: bool = False):
        super().__init__(record)
        self.amplitude = float(amplitude)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}"

    def sample_matrix(self, batch: int, generator, device, dtype=torch.float32) -> torch.Tensor:
        off = _uniform((batch, 6), -self.amplitude, self.amplitude, generator, device, dtype)
        eye = torch.eye(3, device=device, dtype=dtype).expand(batch, 3, 3).clone()
        rows, cols = (0, 0, 1, 1, 2, 2), (1, 2, 0, 2, 0, 1)
        eye[:, rows, cols] = off
        return eye

    def transform(self, x, generator, defer_linear=False):
        A = self.sample_matrix(x.shape[0], generator, x.device, x.dtype)
        self._keep(matrix=A)
        return (x if defer_linear else apply_matrix(A, x)), A


class SpatialFlip(Augmentation):
    """Left/right flip with probability p (NA).

    Reference: only the joint indices are swapped (``NTU_FLIP_ORDER``), coordinates are not
    mirrored. ``mirror=True`` also negates coordinate ``axis`` (x by default), a true reflection,
    reported as ``matrix`` diag(+-1) (identity where not flipped). Records ``flipped`` (B,) bool.
    """

    commutes_with_linear = True  # the index swap does; the mirror is returned as a matrix

    def __init__(self, p: float = 0.5, mirror: bool = False, axis: int = 0,
                 order: tuple[int, ...] = NTU_FLIP_ORDER, record: bool = False):
        super().__init__(record)
        self.p, self.mirror, self.axis = float(p), bool(mirror), int(axis)
        self.order = tuple(order)

    def extra_repr(self) -> str:
        return f"p={self.p}, mirror={self.mirror}"

    def draw(self, batch: int, generator, device, dtype=torch.float32):
        """``(flipped (B,) bool, A (B, 3, 3) or None)`` (A: the mirror, when ``mirror``); kept in
        ``last`` when recording; the data are not touched."""
        flipped = _bernoulli(batch, self.p, generator, device)
        if not self.mirror:
            self._keep(flipped=flipped)
            return flipped, None
        sign = torch.ones(batch, 3, device=device, dtype=dtype)
        sign[:, self.axis] = torch.where(flipped, -1.0, 1.0).to(dtype)
        A = torch.diag_embed(sign)
        self._keep(flipped=flipped, matrix=A)
        return flipped, A

    def transform(self, x, generator, defer_linear=False):
        B, C, T, V, M = x.shape
        flipped, A = self.draw(B, generator, x.device, x.dtype)
        out = x.clone()
        chosen = torch.nonzero(flipped).flatten()
        if chosen.numel():  # only the flipped samples are rewritten, one column gather
            cols = (torch.as_tensor(self.order, device=x.device)[:, None] * M
                    + torch.arange(M, device=x.device)).flatten()
            sub = out.index_select(0, chosen).view(-1, V * M).index_select(1, cols)
            out.index_copy_(0, chosen, sub.view(-1, C, T, V, M))
        if A is None:
            return out, None
        return (out if defer_linear else apply_matrix(A, out)), A


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


class Rotate(Augmentation):
    """Rotation about x, then y, then z (NA): ``A = Rz Ry Rx``.

    Per sample one axis, chosen uniformly, gets an angle from ``U(0, max_angle)`` degrees and the
    two others ``U(0, minor_angle)`` (reference: positive angles only); ``symmetric=True`` draws
    from ``U(-a, a)`` instead. Records ``axis`` (B,), ``angles`` (B, 3) in degrees, ``matrix``.
    """

    def __init__(self, max_angle: float = 30.0, minor_angle: float = 1.0, symmetric: bool = False,
                 record: bool = False):
        super().__init__(record)
        self.max_angle, self.minor_angle = float(max_angle), float(minor_angle)
        self.symmetric = bool(symmetric)

    def extra_repr(self) -> str:
        return f"max_angle={self.max_angle}, minor_angle={self.minor_angle}, symmetric={self.symmetric}"

    def sample(self, batch: int, generator, device, dtype=torch.float32):
        axis = torch.randint(0, 3, (batch,), generator=generator, device=device)
        u = torch.rand(batch, 3, generator=generator, device=device, dtype=dtype)
        if self.symmetric:
            u = 2 * u - 1
        main = torch.nn.functional.one_hot(axis, 3).to(torch.bool)
        angles = u * torch.where(main, self.max_angle, self.minor_angle).to(dtype)
        rad = angles * (math.pi / 180.0)
        A = _axis_rotation(2, rad[:, 2]) @ _axis_rotation(1, rad[:, 1]) @ _axis_rotation(0, rad[:, 0])
        return axis, angles, A

    def transform(self, x, generator, defer_linear=False):
        axis, angles, A = self.sample(x.shape[0], generator, x.device, x.dtype)
        self._keep(axis=axis, angles=angles, matrix=A)
        return (x if defer_linear else apply_matrix(A, x)), A


class GaussianNoise(Augmentation):
    """Additive i.i.d. Gaussian noise ``N(mean, std)`` with probability p per sample (NA).

    Noise is drawn only for the chosen samples (the generator advances by their number).
    Records ``applied`` (B,) bool.
    """

    def __init__(self, p: float = 0.5, std: float = 0.01, mean: float = 0.0, record: bool = False):
        super().__init__(record)
        self.p, self.std, self.mean = float(p), float(std), float(mean)

    def extra_repr(self) -> str:
        return f"p={self.p}, std={self.std}"

    def draw(self, shape, generator, device, dtype=torch.float32):
        """``(applied (B,), chosen (n,), noise (n, *shape[1:]))`` for data of ``shape``: add
        ``std * noise`` to the chosen samples (``apply_``)."""
        applied = _bernoulli(shape[0], self.p, generator, device)
        chosen = torch.nonzero(applied).flatten()  # noise is drawn for the chosen samples only
        noise = torch.randn((chosen.numel(), *shape[1:]), generator=generator, device=device,
                            dtype=dtype)
        if self.mean:
            noise = noise + self.mean / self.std
        self._keep(applied=applied)
        return applied, chosen, noise

    def apply_(self, x: torch.Tensor, chosen: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """In place on ``x`` (which the caller owns)."""
        return x.index_add_(0, chosen, noise, alpha=self.std)

    def transform(self, x, generator, defer_linear=False):
        _, chosen, noise = self.draw(x.shape, generator, x.device, x.dtype)
        return x.index_add(0, chosen, noise, alpha=self.std), None


class GaussianBlur(Augmentation):
    """Temporal Gaussian blur with probability p per sample, zero padding (NA).

    Kernel ``k_i = exp(-i^2 / (2 sigma^2))`` for ``i = -r .. r`` (``r = kernel_size // 2``),
    ``sigma ~ U(sigma_range)`` per sample. The reference does NOT normalise the kernel, so the
    signal is scaled by ``sum(k)`` (up to about 5x); ``normalize=True`` divides by the sum.
    Implemented as one batched (T x T) banded matmul. Records ``sigma``, ``applied``,
    ``kernel_sum`` (B,).
    """

    commutes_with_linear = True  # the same temporal filter on every channel

    def __init__(self, p: float = 0.5, kernel_size: int = 15,
                 sigma: tuple[float, float] = (0.1, 2.0), normalize: bool = False,
                 record: bool = False):
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
        k = torch.exp(-(i ** 2) / (2 * sigma[:, None] ** 2))
        return k / k.sum(1, keepdim=True) if self.normalize else k

    def draw(self, batch: int, generator, device, dtype=torch.float32):
        """``(sigma (B,), applied (B,) bool)``, kept in ``last`` when recording."""
        sigma = _uniform(batch, *self.sigma, generator, device, dtype)
        applied = _bernoulli(batch, self.p, generator, device)
        if self.record:
            self._keep(sigma=sigma, applied=applied, kernel_sum=self.kernels(sigma).sum(1))
        else:
            self.last = {}
        return sigma, applied

    def apply_(self, x: torch.Tensor, sigma: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
        """Blurs the applied samples of ``x`` in place (the caller owns ``x``); the others are
        not touched. One batched (T x T) banded matmul over the applied samples only."""
        B, C, T, V, M = x.shape
        chosen = torch.nonzero(applied).flatten()
        if chosen.numel() == 0:
            return x
        k = self.kernels(sigma.index_select(0, chosen)).to(x.dtype).repeat_interleave(C, dim=0)
        r = self.kernel_size // 2
        # banded Toeplitz W[b, t, s] = k[b, s - t + r] for |s - t| <= r (zero padding built in),
        # one per (sample, channel) for a plain bmm: a Hankel view of the zero-padded kernel,
        # H[b, t, u] = q[b, t + u + r] = W[b, t, T - 1 - u], then flipped along its last axis
        q = x.new_zeros(k.shape[0], 2 * T - 1 + 2 * r)
        q[:, T - 1:T + 2 * r] = k.flip(1)
        W = q.as_strided((k.shape[0], T, T), (q.shape[1], 1, 1), r).flip(2)
        sub = x.index_select(0, chosen).view(-1, T, V * M)
        x.index_copy_(0, chosen, torch.bmm(W, sub).view(-1, C, T, V, M))
        return x

    def transform(self, x, generator, defer_linear=False):
        sigma, applied = self.draw(x.shape[0], generator, x.device, x.dtype)
        return self.apply_(x.clone(), sigma, applied), None


class AxisMask(Augmentation):
    """With probability p, one coordinate axis (uniform over x, y, z) is zeroed for the whole clip (NA).

    Singular: a masked view has no inverse map. Records ``axis`` (B,), ``applied`` (B,) bool.
    """

    def __init__(self, p: float = 0.5, record: bool = False):
        super().__init__(record)
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def draw(self, batch: int, channels: int, generator, device):
        """``(applied (B,) bool, axis (B,))``, kept in ``last`` when recording."""
        applied = _bernoulli(batch, self.p, generator, device)
        axis = torch.randint(0, channels, (batch,), generator=generator, device=device)
        self._keep(axis=axis, applied=applied)
        return applied, axis

    @staticmethod
    def apply_(x: torch.Tensor, applied: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        """Zeros the drawn axis of the applied samples of ``x`` in place (the caller owns ``x``);
        only those (sample, axis) rows are written."""
        B, C = x.shape[:2]
        chosen = torch.nonzero(applied).flatten()
        if chosen.numel():
            x.view(B * C, -1).index_fill_(0, chosen * C + axis.index_select(0, chosen), 0.0)
        return x

    def transform(self, x, generator, defer_linear=False):
        applied, axis = self.draw(x.shape[0], x.shape[1], generator, x.device)
        return self.apply_(x.clone(), applied, axis), None


class JointMask(Augmentation):
    """Random joint mask (S): in every frame, ``int(V * ratio)`` distinct joints are masked, for
    both persons and all channels.

    The data are returned unchanged: the learnable mask token lives in the model, which fills the
    masked places. The boolean mask ``(B, 1, T, V, 1)`` (True = masked) is returned by
    ``sample_mask`` and kept in ``last["mask"]`` (always, since the policy needs it).
    Reference: ONE mask for the whole batch (``shared_across_batch``); ``per_sample=True`` draws
    one per sample.
    """

    commutes_with_linear = True

    def __init__(self, ratio: float = 0.1, per_sample: bool = False, record: bool = False):
        super().__init__(record)
        self.ratio, self.per_sample = float(ratio), bool(per_sample)

    @property
    def shared_across_batch(self) -> bool:  # type: ignore[override]
        return not self.per_sample

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, per_sample={self.per_sample}"

    def sample_mask(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        B, C, T, V, M = x.shape
        count = int(V * self.ratio)
        groups = B if self.per_sample else 1
        scores = torch.rand(groups, T, V, generator=generator, device=x.device)
        chosen = scores.argsort(dim=-1)[..., :count]  # a uniform random subset of `count` joints
        mask = torch.zeros(groups, T, V, dtype=torch.bool, device=x.device)
        mask.scatter_(-1, chosen, True)
        mask = mask[:, None, :, :, None].expand(B, 1, T, V, 1)
        self.last = {"mask": mask}
        return mask

    def transform(self, x, generator, defer_linear=False):
        self.sample_mask(x, generator)
        return x, None


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "temporal_crop": TemporalCrop,
    "shear": Shear,
    "spatial_flip": SpatialFlip,
    "rotate": Rotate,
    "gaussian_noise": GaussianNoise,
    "gaussian_blur": GaussianBlur,
    "axis_mask": AxisMask,
    "joint_mask": JointMask,
}
