"""Neural fractals: images drawn by iterating a random complex-valued MLP as a dynamical system.

For each pixel's complex coordinate c, iterate z_{n+1} = g(z_n) + c from z_0 = 0, where g: C -> C is
a randomly initialised complex MLP (the paper's default: 6 hidden layers of 3 complex neurons, tanh,
the output raised to the third power). A point belongs to the fractal when |z_T| <= tau, with tau set
per image (a quantile of |z_T| over the image, capped at the escape radius) so no render is empty or
full; a pixel's value is the share of its sub-pixel samples that belong. The class of an image is the
network that drew it; the views of a class differ in zoom, shift, rotation, colour map and a small
jitter of the network's weights. Whole batches render at once as tensors (no per-pixel Python), on a
CPU or a GPU.

One change to the paper's g, measured (README, "Neural fractals"): g(z) = (MLP(z) + skip * z)^3. With
skip = 0 (the paper's g), tanh saturates or meets its poles, nothing escapes for good, and at 32
pixels the set is either a smooth level set of |z_T| (disks, half-planes) or chaotic speckle at every
zoom. The linear term makes g grow like z^3 far out, so orbits escape as in a Multibrot set and the
boundary between escaping and bounded points is a fractal curve; the MLP (kept in its smooth range by
`gain`) bends it differently for every network. Views are centred on that boundary: each network is
probed once over the base window, and views zoom in around points where bounded meets escaping.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from nas_agent.device import resolve_device

_ESCAPE = 1e4          # |z| beyond this is "escaped": frozen there, so no inf/NaN spreads
_PALETTE_STOPS = 4     # colours per random colour map


@dataclass(frozen=True)
class RenderSettings:
    """What a neural-fractal dataset is made of; stored with the dataset and hashed into its identity."""

    classes: int = 10                  # generator networks (one class each)
    per_class: int = 100               # views per network
    size: int = 32                     # image side in pixels
    layers: int = 6                    # hidden layers of g
    width: int = 3                     # complex neurons per hidden layer
    power: int = 3                     # g's output is raised to this power
    steps: int = 20                    # iterations T
    samples: int = 2                   # sub-pixel samples per side (samples**2 per pixel)
    gain: float = 0.7                  # scale of the random weights (times 1/sqrt(fan-in))
    skip: float = 1.0                  # g(z) = (MLP(z) + skip * z)^power; 0 is the paper's g exactly
    jitter: float = 0.05               # per-view weight noise, relative to the weights' scale
    span: float = 2.0                  # half-width of the base window in the c-plane
    zoom: tuple[float, float] = (0.1, 0.6)       # views zoom into the base window by this factor
    coverage: tuple[float, float] = (0.25, 0.6)  # share of samples inside (sets tau per image)
    min_std: float = 0.08              # flatter than this (std of coverage) is degenerate
    min_autocorr: float = 0.70         # rougher than this (neighbour correlation) is noise-like
    min_dimension: float = 1.2         # a boundary of lower box-counting dimension is too simple
    seed: int = 0

    def __post_init__(self):
        problems = []
        if self.classes < 1 or self.per_class < 1:
            problems.append("classes and per-class must be at least 1")
        if not 8 <= self.size <= 512:
            problems.append(f"size must be in 8..512, got {self.size}")
        if self.layers < 1 or self.width < 1 or self.power < 1:
            problems.append("layers, width and power must be at least 1")
        if self.skip < 0 or self.gain <= 0:
            problems.append("skip must be >= 0 and gain > 0")
        if self.steps < 1 or self.samples < 1:
            problems.append("steps and samples must be at least 1")
        if not (0 < self.coverage[0] < self.coverage[1] < 1):
            problems.append("coverage must be two shares 0 < low < high < 1")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RenderStats:
    """How rendering went: what was drawn, what the degeneracy filter threw away, how fast."""

    images: int = 0
    rendered: int = 0                  # views drawn, kept or not (probe views of candidate networks too)
    rejected_flat: int = 0
    rejected_noise: int = 0
    rejected_simple: int = 0           # a straight edge, a disk or another smooth curve (boundary dimension)
    networks_tried: int = 0            # generator networks drawn to find `classes` usable ones
    networks_probed: int = 0           # of those, the ones whose set has a boundary: probe views drawn
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def images_per_second(self) -> float:
        """Kept images per second of the whole job, probes and rejects included in the time."""
        return self.images / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_second": self.images_per_second}


@dataclass
class Networks:
    """A batch of complex MLPs g, one per image: weights (B, out, in) and biases (B, out) per layer."""

    weights: list[torch.Tensor] = field(default_factory=list)
    biases: list[torch.Tensor] = field(default_factory=list)

    def to(self, device) -> "Networks":
        return Networks([w.to(device) for w in self.weights], [b.to(device) for b in self.biases])

    @staticmethod
    def stack(items: list["Networks"]) -> "Networks":
        return Networks([torch.cat(ws) for ws in zip(*(n.weights for n in items))],
                        [torch.cat(bs) for bs in zip(*(n.biases for n in items))])

    def __call__(self, zr: torch.Tensor, zi: torch.Tensor, power: int,
                 skip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """g(z) = (MLP(z) + skip z)^power for z = zr + i zi of shape (B, P): tanh hidden layers, a linear output.

        Real and imaginary parts are kept apart: on a CPU this runs about 3x faster than torch's
        complex tanh and batched matmul over layers this narrow (measured, width 3).
        """
        hr, hi = zr.unsqueeze(1), zi.unsqueeze(1)              # (B, in=1, P)
        last = len(self.weights) - 1
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            wr, wi = w.real.unsqueeze(-1), w.imag.unsqueeze(-1)   # (B, out, in, 1)
            # Sum over the (few) inputs by a Python loop over neurons, never over pixels.
            outr = b.real.unsqueeze(-1).expand(-1, -1, hr.shape[-1])
            outi = b.imag.unsqueeze(-1).expand(-1, -1, hr.shape[-1])
            for k in range(hr.shape[1]):
                xr, xi = hr[:, k:k + 1], hi[:, k:k + 1]
                outr = outr + xr * wr[:, :, k] - xi * wi[:, :, k]
                outi = outi + xr * wi[:, :, k] + xi * wr[:, :, k]
            hr, hi = _tanh(outr, outi) if layer < last else (outr, outi)
        yr, yi = hr[:, 0] + skip * zr, hi[:, 0] + skip * zi
        pr, pi = yr, yi
        for _ in range(power - 1):
            pr, pi = pr * yr - pi * yi, pr * yi + pi * yr
        return pr, pi


def _tanh(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex tanh(a + ib) = (sinh 2a + i sin 2b) / (cosh 2a + cos 2b), with one exp for sinh and cosh."""
    e = torch.exp((2 * a).clamp(-30, 30))      # tanh is +-1 to float precision beyond |2a| = 30
    inv = 1 / e
    den = (e + inv) * 0.5 + torch.cos(2 * b)
    return (e - inv) * 0.5 / den, torch.sin(2 * b) / den


def _complex_normal(shape, generator: torch.Generator) -> torch.Tensor:
    re, im = torch.randn((2, *shape), generator=generator)
    return torch.complex(re, im) / math.sqrt(2)


def _seeded(*parts) -> torch.Generator:
    """A generator whose stream depends only on `parts`: every network and view is drawn independently
    of which others were kept, so a seed gives the same images whatever the filter threw away."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def draw_network(settings: RenderSettings, index: int) -> Networks:
    """Generator network number `index` of this seed (batch of one)."""
    g = _seeded(settings.seed, "network", index)
    dims = [1] + [settings.width] * settings.layers + [1]
    weights, biases = [], []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        weights.append(_complex_normal((1, fan_out, fan_in), g) * settings.gain / math.sqrt(fan_in))
        biases.append(_complex_normal((1, fan_out), g) * settings.gain * 0.5)
    return Networks(weights, biases)


@dataclass
class View:
    """How one image looks at its network: where in the c-plane, how it is jittered and coloured."""

    center: complex
    scale: float                        # half-width of the window
    angle: float
    coverage: float                     # share of samples that belong (sets tau)
    palette: torch.Tensor               # (_PALETTE_STOPS, 3) colours in 0..1
    orbit_colour: bool                  # colour by an orbit statistic rather than by coverage alone
    noise: list[torch.Tensor]           # per-layer complex weight noise


def draw_view(settings: RenderSettings, network: Networks, cls: int, index: int,
              anchors: torch.Tensor | None = None) -> View:
    """View number `index` of class `cls`, centred near one of the network's `anchors` when it has any."""
    g = _seeded(settings.seed, "view", cls, index)
    u = torch.rand(8, generator=g).tolist()
    zoom_lo, zoom_hi = settings.zoom
    scale = settings.span * math.exp(math.log(zoom_lo) + u[0] * (math.log(zoom_hi) - math.log(zoom_lo)))
    if anchors is not None and len(anchors):
        # Near a point of the set's boundary, off it by up to a quarter of the window.
        anchor = complex(anchors[min(int(u[6] * len(anchors)), len(anchors) - 1)])
        center = anchor + complex(u[1] - 0.5, u[2] - 0.5) * 0.5 * scale
    else:
        # Anywhere that keeps the window inside the base one.
        room = max(settings.span - scale, 0.0)
        center = complex((2 * u[1] - 1) * room, (2 * u[2] - 1) * room)
    cov_lo, cov_hi = settings.coverage
    palette = torch.rand((_PALETTE_STOPS, 3), generator=g)
    noise = [_complex_normal(w.shape, g) * settings.jitter * w.abs().mean() for w in network.weights]
    return View(center, scale, 2 * math.pi * u[3], cov_lo + u[4] * (cov_hi - cov_lo), palette, u[5] < 0.5, noise)


def _unit_grid(n: int, device) -> torch.Tensor:
    """The centres of an n x n grid over the square -1..1 (x right, y up), as complex numbers (1, n*n)."""
    ticks = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n * 2 - 1
    return torch.complex(ticks.view(1, n).expand(n, n), -ticks.view(n, 1).expand(n, n)).reshape(1, -1)


def _grid(views: list[View], settings: RenderSettings, device) -> torch.Tensor:
    """Complex coordinates c of every sub-pixel sample, (B, (size*samples)**2)."""
    unit = _unit_grid(settings.size * settings.samples, device)
    center = torch.tensor([v.center for v in views], dtype=torch.complex64, device=device).unsqueeze(1)
    rot = torch.tensor([v.scale * complex(math.cos(v.angle), math.sin(v.angle)) for v in views],
                       dtype=torch.complex64, device=device).unsqueeze(1)
    return center + rot * unit


def iterate(networks: Networks, c: torch.Tensor, steps: int, power: int,
            skip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """|z_T| and the orbit's mean log-magnitude for z_{n+1} = g(z_n) + c, z_0 = 0; escaped points give inf."""
    cr, ci = c.real.contiguous(), c.imag.contiguous()
    zr, zi = torch.zeros_like(cr), torch.zeros_like(ci)
    alive = torch.ones(cr.shape, dtype=torch.bool, device=c.device)
    orbit = torch.zeros_like(cr)
    for _ in range(steps):
        gr, gi = networks(zr, zi, power, skip)
        nr, ni = gr + cr, gi + ci
        mag = torch.sqrt(nr * nr + ni * ni)
        alive = alive & torch.isfinite(mag) & (mag <= _ESCAPE)
        # Escaped points stay where they were: keeps NaN and inf out of the arithmetic.
        zr, zi = torch.where(alive, nr, zr), torch.where(alive, ni, zi)
        orbit += torch.where(alive, mag, torch.full_like(mag, _ESCAPE)).log1p()
    final = torch.where(alive, torch.sqrt(zr * zr + zi * zi), torch.full_like(orbit, math.inf))
    return final, orbit / steps


_PROBE_SIDE = 64   # probe grid per side over the base window, where anchors are looked for


def find_anchors(networks: Networks, settings: RenderSettings, device) -> list[torch.Tensor]:
    """Per network of the batch, the c-plane points (complex, on the CPU) where the set's boundary runs.

    One coarse pass over the base window: a probe pixel is an anchor when it stays bounded for T
    steps and a neighbour escapes, or the other way round, so a view centred there is never all
    inside or all outside. A network whose probe has no such pixel gets an empty tensor.
    """
    n = _PROBE_SIDE
    unit = _unit_grid(n, device)
    count = networks.weights[0].shape[0]
    c = (settings.span * unit).expand(count, -1)
    final, _ = iterate(networks.to(device), c, settings.steps, settings.power, settings.skip)
    bounded = torch.isfinite(final).view(count, n, n)
    edge = torch.zeros_like(bounded)
    edge[:, :, :-1] |= bounded[:, :, 1:] != bounded[:, :, :-1]
    edge[:, :-1, :] |= bounded[:, 1:, :] != bounded[:, :-1, :]
    points = c.view(count, n, n).cpu()
    return [points[k][edge[k].cpu()] for k in range(count)]


def _rank01(x: torch.Tensor) -> torch.Tensor:
    """Per-row ranks scaled to 0..1: a statistic made uniform, whatever its range."""
    ranks = x.argsort(dim=1).argsort(dim=1).float()
    return ranks / max(x.shape[1] - 1, 1)


def _apply_palette(t: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
    """Colour values t in 0..1 (B, H, W) through piecewise-linear palettes (B, S, 3) -> (B, 3, H, W)."""
    stops = palettes.shape[1] - 1
    pos = t.clamp(0, 1) * stops
    low = pos.floor().clamp(max=stops - 1).long()
    frac = (pos - low).unsqueeze(-1)
    b = torch.arange(t.shape[0], device=t.device).view(-1, 1, 1)
    colour = palettes[b, low] * (1 - frac) + palettes[b, low + 1] * frac
    return colour.permute(0, 3, 1, 2)


def render_views(networks: Networks, views: list[View], settings: RenderSettings,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a batch: (uint8 images B x 3 x size x size, float coverage B x size x size)."""
    jittered = Networks([w + torch.cat([v.noise[i] for v in views]) for i, w in enumerate(networks.weights)],
                        networks.biases).to(device)
    c = _grid(views, settings, device)
    final, orbit = iterate(jittered, c, settings.steps, settings.power, settings.skip)
    # tau per image: the quantile that puts the view's share of samples inside (never empty or full),
    # capped at the escape radius: an escaped point is never inside.
    q = torch.tensor([v.coverage for v in views], device=device).unsqueeze(1)
    finite = torch.where(torch.isfinite(final), final, torch.full_like(final, torch.finfo(torch.float32).max))
    tau = _row_quantile(finite, q).clamp(max=_ESCAPE)
    inside = (final <= tau).float()
    n, s = settings.size, settings.samples
    coverage = F.avg_pool2d(inside.view(-1, 1, n * s, n * s), s).view(-1, n, n)   # anti-aliased coverage
    stat = F.avg_pool2d(_rank01(orbit).view(-1, 1, n * s, n * s), s).view(-1, n, n)
    palettes = torch.stack([v.palette for v in views]).to(device)
    by_orbit = torch.tensor([v.orbit_colour for v in views], device=device).view(-1, 1, 1, 1)
    # Colour map of the coverage alone, or the orbit statistic inside the set over a background colour.
    mapped = _apply_palette(coverage, palettes)
    shaded = _apply_palette(stat, palettes[:, 1:]) * coverage.unsqueeze(1) + \
        palettes[:, :1].permute(0, 2, 1).unsqueeze(-1) * (1 - coverage.unsqueeze(1))
    rgb = torch.where(by_orbit, shaded, mapped)
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8).cpu(), coverage.cpu()


def _row_quantile(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The q[i]-quantile of row i (lower value, no interpolation), (B, 1)."""
    k = (q.squeeze(1) * (x.shape[1] - 1)).round().long()
    return x.sort(dim=1).values.gather(1, k.unsqueeze(1))


def boundary_complexity(coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(length, dimension) of the set's boundary in coverage images (B, H, W).

    A boundary pixel is one the boundary crosses: partly covered, or on the other side of 0.5 than
    its right or lower neighbour. `length` is their count in units of the image side (a straight edge
    across the image: 1-1.2; a disk a third of the image wide: 2.7); `dimension` is the box-counting
    dimension of the boundary: the least-squares slope of log N(s) over log 1/s, N(s) the s x s boxes
    that hold a boundary pixel, s = 1, 2, 4, 8. A line, a disk or any smooth curve: about 1; speckle: 2.
    """
    x = coverage.float()
    inside = x >= 0.5
    edge = (x > 0.02) & (x < 0.98)
    edge[:, :, :-1] |= inside[:, :, 1:] != inside[:, :, :-1]
    edge[:, :-1, :] |= inside[:, 1:, :] != inside[:, :-1, :]
    side = x.shape[-1]
    b = edge.float().unsqueeze(1)
    counts, scales = [b.flatten(1).sum(1)], [0.0]
    s = 2
    while s <= min(8, side // 4):
        counts.append(F.max_pool2d(b, s, ceil_mode=True).flatten(1).sum(1))
        scales.append(math.log(1 / s))
        s *= 2
    logn = torch.stack(counts, 1).clamp_min(1).log()
    u = torch.tensor(scales, device=logn.device)
    u = u - u.mean()
    dimension = (logn * u).sum(1) / (u * u).sum()
    return counts[0] / side, dimension


def degeneracy(coverage: torch.Tensor, settings: RenderSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat, noise_like) masks for coverage images (B, H, W).

    Flat: the coverage varies little (std below `min_std`): an empty, full or washed-out render.
    Noise-like: neighbouring pixels barely agree (mean horizontal/vertical correlation below
    `min_autocorr`): speckle with no structure a network could learn.
    """
    x = coverage.float()
    std = x.flatten(1).std(dim=1)
    flat = std < settings.min_std
    centred = x - x.mean(dim=(1, 2), keepdim=True)
    var = centred.pow(2).mean(dim=(1, 2)).clamp_min(1e-12)
    horizontal = (centred[:, :, 1:] * centred[:, :, :-1]).mean(dim=(1, 2)) / var
    vertical = (centred[:, 1:, :] * centred[:, :-1, :]).mean(dim=(1, 2)) / var
    noise = ~flat & ((horizontal + vertical) / 2 < settings.min_autocorr)
    return flat, noise


def too_simple(coverage: torch.Tensor, settings: RenderSettings) -> torch.Tensor:
    """Mask of coverage images (B, H, W) whose boundary is a line, a disk or another smooth curve.

    The box-counting dimension of the boundary (`boundary_complexity`) is below `min_dimension`.
    Measured (32 px, 2x2 samples): hand-drawn half-planes, disks, a sine edge, stripes and two small
    disks score 0.88-1.18, speckle 1.99. Renders of the earlier generator that passed the flat/noise
    tests: quartiles 1.00 / 1.15 / 1.49; those below 1.2 (46 % of them) are the half-planes and disks
    of its preview, those above have ragged, many-scale boundaries. So 1.2: above every smooth shape.
    Below 32 px a side the boundary spans too few scales to measure, and nothing is rejected.
    """
    if coverage.shape[-1] < 32:
        return torch.zeros(coverage.shape[0], dtype=torch.bool, device=coverage.device)
    _, dimension = boundary_complexity(coverage)
    return dimension < settings.min_dimension


def _rejections(coverage: torch.Tensor, settings: RenderSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat, noise, simple): disjoint masks, in that order of precedence."""
    flat, noise = degeneracy(coverage, settings)
    simple = ~flat & ~noise & too_simple(coverage, settings)
    return flat, noise, simple


def render_dataset(settings: RenderSettings, device: str | torch.device = "cpu", batch: int = 256,
                   on_progress: Callable[[int, int], None] = lambda done, total: None,
                   ) -> tuple[torch.Tensor, torch.Tensor, RenderStats]:
    """Render `classes` x `per_class` non-degenerate images: (uint8 N x 3 x H x W, int64 labels N, stats).

    A network whose probe views are mostly degenerate is replaced by the next one; a class's views
    are drawn until `per_class` pass the filter. Images come out ordered by class, then view.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    stats = RenderStats(device=str(device))
    started = time.perf_counter()
    total = settings.classes * settings.per_class
    networks, anchors = _choose_networks(settings, device, stats, batch)
    images: list[list[torch.Tensor]] = [[] for _ in range(settings.classes)]
    next_view = [0] * settings.classes
    max_views = 20 * settings.per_class
    while True:
        wanted = [(k, next_view[k] + i) for k in range(settings.classes)
                  for i in range(settings.per_class - len(images[k]))]
        if not wanted:
            break
        for start in range(0, len(wanted), batch):
            chunk = wanted[start:start + batch]
            nets = Networks.stack([networks[k] for k, _ in chunk])
            views = [draw_view(settings, networks[k], k, j, anchors[k]) for k, j in chunk]
            rgb, coverage = render_views(nets, views, settings, device)
            flat, noise, simple = _rejections(coverage, settings)
            stats.rendered += len(chunk)
            stats.rejected_flat += int(flat.sum())
            stats.rejected_noise += int(noise.sum())
            stats.rejected_simple += int(simple.sum())
            for (k, j), image, bad in zip(chunk, rgb, (flat | noise | simple).tolist()):
                if not bad and len(images[k]) < settings.per_class:
                    images[k].append(image)
            on_progress(sum(map(len, images)), total)
        for k in range(settings.classes):
            next_view[k] += settings.per_class
            if len(images[k]) < settings.per_class and next_view[k] >= max_views:
                raise ValueError(f"class {k}: only {len(images[k])} of {max_views} views passed the degeneracy "
                                 "filter; loosen min_std/min_autocorr/min_dimension or change the seed")
    x = torch.stack([im for per in images for im in per])
    y = torch.arange(settings.classes).repeat_interleave(settings.per_class)
    stats.images, stats.seconds = len(x), time.perf_counter() - started
    return x, y, stats


_PROBES = 8   # probe views per candidate network; kept when at least half pass the filter


def _choose_networks(settings: RenderSettings, device, stats: RenderStats,
                     batch: int) -> tuple[list[Networks], list[torch.Tensor]]:
    """The first `classes` networks of the seed's sequence whose probe views are mostly usable, and their anchors.

    With skip > 0 a network whose set has no boundary in the base window (all points escape, or
    none) is passed over before any view is drawn.
    """
    chosen: list[Networks] = []
    chosen_anchors: list[torch.Tensor] = []
    index = 0
    per_batch = max(1, batch // _PROBES)
    while len(chosen) < settings.classes:
        if index >= 50 * settings.classes + 100:
            raise ValueError(f"only {len(chosen)} of {index} generator networks draw usable images; "
                             "change --layers, --width or --seed")
        # Draw about twice the networks still missing (about half pass), never more than a batch.
        count = min(per_batch, max(2, 2 * (settings.classes - len(chosen))))
        drawn = [draw_network(settings, i) for i in range(index, index + count)]
        stats.networks_tried += count
        found = find_anchors(Networks.stack(drawn), settings, device)
        keep = [i for i in range(count) if len(found[i]) or settings.skip == 0]
        first, index = index, index + count
        if not keep:
            continue
        candidates = [(first + i, drawn[i], found[i]) for i in keep]
        nets = Networks.stack([n for _, n, _ in candidates for _ in range(_PROBES)])
        # Probe views have their own stream (negative class ids), so they never repeat a dataset view.
        views = [draw_view(settings, n, -1 - i, p, a) for i, n, a in candidates for p in range(_PROBES)]
        _, coverage = render_views(nets, views, settings, device)
        flat, noise, simple = _rejections(coverage, settings)
        bad = (flat | noise | simple).view(len(candidates), _PROBES).float().mean(1)
        for (_, net, found_anchors), share in zip(candidates, bad.tolist()):
            if share <= 0.5 and len(chosen) < settings.classes:
                chosen.append(net)
                chosen_anchors.append(found_anchors)
        stats.rendered += len(views)
        stats.networks_probed += len(candidates)
    return chosen, chosen_anchors
