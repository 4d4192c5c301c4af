"""Training (notebook 08): random shifts, the schedule, weight-decay groups, the step counts."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import functools
import math
import numbers

import torch
from torch import nn

from ..data import iterate_batches
from ..training import make_optimizer, warmup_cosine
from ._harness import (
    CheckFailed,
    _call,
    _check,
    _check_int,
    _expect,
    _ok,
    _randn,
    _shape,
)


def _shifted(images: torch.Tensor, dy: int, dx: int, fill: str = "corner") -> torch.Tensor:
    """Every image moved so that out[r, c] = in[r + dy, c + dx]; uncovered pixels get ``fill``."""
    b, c, h, w = images.shape
    if fill == "roll":
        return torch.roll(images, shifts=(-dy, -dx), dims=(2, 3))
    base = images[:, :, :1, :1].expand(b, c, h, w) if fill == "corner" else torch.zeros_like(images)
    out = base.clone()
    rs, re_ = max(0, -dy), min(h, h - dy)
    cs, ce = max(0, -dx), min(w, w - dx)
    if rs < re_ and cs < ce:
        out[:, :, rs:re_, cs:ce] = images[:, :, rs + dy:re_ + dy, cs + dx:ce + dx]
    return out


def _match_shift(got: torch.Tensor, images: torch.Tensor, reach: int, fill: str) -> torch.Tensor:
    """[B, 2] the (dy, dx) in [-reach, reach] that turns each input into its output, or a large
    sentinel where none does."""
    found = torch.full((len(images), 2), 10**6, dtype=torch.long)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            cand = _shifted(images, dy, dx, fill)
            same = torch.isclose(got, cand, rtol=1e-5, atol=1e-5).flatten(1).all(dim=1)
            newly = same & (found[:, 0] == 10**6)
            found[newly] = torch.tensor([dy, dx])
    return found


@_check
def check_random_shift(fn) -> None:
    """fn(images [B, C, H, W], max_shift, generator=None): each image moved by its own integer
    (dy, dx) in [-max_shift, max_shift], the uncovered border filled with the corner value."""
    s = 2
    images = _randn(400, 2, 8, 8, seed=180) + 1.5  # normalised-like: the background is not 0
    on = f"images {_shape(images)}, max_shift={s}"
    got = _call("random_shift", fn, images, s, generator=torch.Generator().manual_seed(0))
    if not isinstance(got, torch.Tensor) or got.shape != images.shape or got.dtype != images.dtype:
        _expect(got, images, what="the shifted images", on=on,  # raises: the type, shape or dtype is off
                shape_hint="the shifted images keep the input's shape [B, C, H, W]")
    found = _match_shift(got, images, s, "corner")
    bad = (found[:, 0] == 10**6).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        one, img = got[i:i + 1], images[i:i + 1]
        if (_match_shift(one, img, s, "roll")[0, 0] != 10**6).item():
            msg = ("pixels that leave one side come back on the other (torch.roll wraps around): fill the "
                   "uncovered border with the background, the image's corner value images[:, :, :1, :1] "
                   "(pad, then crop a window)")
        elif (_match_shift(one, img, s, "zero")[0, 0] != 10**6).item():
            msg = ("the uncovered border is filled with 0, but the images are normalised, so the background "
                   "is not 0: fill with the corner value images[:, :, :1, :1]")
        elif (_match_shift(one, img, 2 * s + 1, "corner")[0, 0] != 10**6).item():
            msg = (f"the image moved by more than max_shift={s} pixels: draw dy and dx in [-max_shift, "
                   "max_shift], torch.randint(-s, s + 1, ...) or a window offset in [0, 2s]")
        elif all((_match_shift(got[i:i + 1, ch:ch + 1], images[i:i + 1, ch:ch + 1], s, "corner")[0, 0]
                  != 10**6).item() for ch in range(images.shape[1])):
            msg = ("the channels of one image moved by different amounts: move all channels of an image "
                   "together")
        else:
            msg = ("it is not a copy of the input moved by whole pixels with a background-filled border: "
                   "take a window of the padded image, canvas[:, dy:dy + H, dx:dx + W]")
        raise CheckFailed(f"image {i} of the output is wrong ({on}): {msg}")
    pairs = {tuple(p) for p in found.tolist()}
    dys, dxs = {p[0] for p in pairs}, {p[1] for p in pairs}
    if len(pairs) == 1:
        raise CheckFailed(f"every image in the batch got the same shift {pairs.pop()} ({on}): draw one (dy, "
                          "dx) per image, e.g. torch.randint(0, 2 * s + 1, (2, B), generator=generator)")
    full = set(range(-s, s + 1))
    if dys != full or dxs != full:
        missing = sorted((full - dys) | (full - dxs))
        hint = (" Shifts are only non-negative: they must go both ways, [-s, s]." if min(dys | dxs) >= 0 else
                " torch.randint's upper bound is exclusive: randint(low, high + 1)."
                if len(missing) == 1 else "")
        raise CheckFailed(f"over 400 images the shifts never took the value(s) {missing} ({on}); every "
                          f"integer in [-{s}, {s}] must be possible in both directions.{hint}")
    again = _call("random_shift", fn, images, s, generator=torch.Generator().manual_seed(0))
    if not torch.equal(again, got):
        raise CheckFailed("two calls with generators seeded alike gave different shifts: draw the random "
                          "offsets with that generator, torch.randint(..., generator=generator), so that "
                          "runs repeat")
    _check_shift_convention(found, s, len(images), on)
    same = _call("random_shift", fn, images[:4], 0)
    _expect(same, images[:4], what="the output for max_shift=0", on=f"images {_shape(images[:4])}, "
                                                                    "max_shift=0",
            shape_hint="max_shift=0 returns the images unchanged")
    _call("random_shift", fn, images[:4], 1)
    _ok("check_random_shift", f"each of 400 images is moved by its own (dy, dx) in [-{s}, {s}] with a "
                              f"background-filled border, all {len(pairs)} shifts occur, the generator makes "
                              "it repeatable, and the shifts are vitlearn.data.random_shift's for the same "
                              "generator")


_CONVENTION = ("vitlearn.data.random_shift's convention, which the next cell compares against with the same "
               "generator: offsets = torch.randint(0, 2 * s + 1, (2, B), generator=generator) in one call, "
               "row 0 "
               "for the rows and row 1 for the columns, and image i is the window canvas[:, oy:oy + H, "
               "ox:ox + W] "
               "of its padded canvas (an offset of s is no shift)")


def _check_shift_convention(found: torch.Tensor, s: int, b: int, on: str) -> None:
    """The shifts are valid; they must also be the ones vitlearn.data.random_shift draws from a
    generator seeded 0, so that the notebook can compare the two image for image."""
    g = torch.Generator().manual_seed(0)
    ours = torch.randint(0, 2 * s + 1, (2, b), generator=g).T - s  # [B, 2] (dy, dx)
    if torch.equal(found, ours):
        return
    g = torch.Generator().manual_seed(0)
    b2 = torch.randint(0, 2 * s + 1, (b, 2), generator=g) - s
    g = torch.Generator().manual_seed(0)
    two = torch.stack([torch.randint(0, 2 * s + 1, (b,), generator=g) for _ in range(2)], dim=1) - s
    known = [(ours.flip(1), "dy and dx are swapped: the first row of the offsets moves the rows (dy), the "
                            "second "
                            "the columns (dx)"),
             (-ours, "every image moves in the opposite direction: the offset picks the window's corner in "
                     "the padded canvas (out[r, c] = canvas[r + oy, c + ox]); it does not move the image by "
                     "it"),
             (b2, "the offsets were drawn as a [B, 2] tensor; draw them as [2, B], one row for dy and one "
                  "for dx"),
             (two, "dy and dx were drawn in two calls; draw both in one, torch.randint(0, 2 * s + 1, (2, B), "
                   "generator=generator)")]
    for shifts, message in known:
        if torch.equal(found, shifts):
            raise CheckFailed(f"the shifts are valid, but {message} ({on}). The course pins {_CONVENTION}")
    raise CheckFailed(f"the shifts are valid random shifts, but not the ones vitlearn.data.random_shift "
                      "draws "
                      f"from the same generator ({on}). The course pins {_CONVENTION}")


def _schedule_mutants(total, warmup, min_f):
    def cos(progress, m=min_f):
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * progress))

    def prog(step):
        return min(1.0, (step - warmup) / max(1, total - warmup))

    ref = functools.partial(warmup_cosine, total_steps=total, warmup_steps=warmup, min_factor=min_f)
    return [
        (lambda st: st / warmup if st < warmup else ref(st),
         "warm-up off by one: step 0 gets factor 0, so the first update does nothing, and step warmup_steps "
         "- 1 never reaches 1: use (step + 1) / warmup_steps"),
        (lambda st: (st + 1) / warmup if st <= warmup else ref(st),
         "the warm-up runs one step too long (step <= warmup_steps), so step warmup_steps gets a factor "
         "above 1: use step < warmup_steps"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(min(1.0, st / total)),
         "the cosine starts counting at step 0, not at the end of the warm-up: progress = (step - "
         "warmup_steps) / (total_steps - warmup_steps)"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(min(1.0, (st - warmup) / total)),
         "the cosine progress is divided by total_steps; divide by the steps after the warm-up, total_steps "
         "- warmup_steps"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(prog(st), 0.0),
         "min_factor is ignored: the factor decays to 0; it should end at min_factor: min_factor + (1 - "
         "min_factor) * 0.5 * (1 + cos(pi * progress))"),
        (lambda st: (st + 1) / warmup if st < warmup else min_f + 0.5 * (1 + math.cos(math.pi * prog(st))),
         "min_factor is added without scaling the cosine, so the peak is 1 + min_factor: min_factor + (1 - "
         "min_factor) * 0.5 * (1 + cos(pi * progress))"),
        (lambda st: (st + 1) / warmup if st < warmup else cos((st - warmup) / max(1, total - warmup)),
         "after total_steps the factor comes back up (the cosine is not clamped): progress = min(1, ...)"),
        (lambda st: (st + 1) / warmup if st < warmup else
         min_f + (1 - min_f) * math.cos(math.pi / 2 * prog(st)),
         "this is a quarter cosine, cos(pi/2 * progress); the schedule is half a period: 0.5 * (1 + cos(pi "
         "* progress))"),
    ]


@_check
def check_warmup_cosine(fn) -> None:
    """fn(step, total_steps, warmup_steps, min_factor=0.0) -> learning-rate factor (a float)."""
    configs = [(1000, 100, 0.0), (11232, 468, 0.01), (200, 1, 0.1), (50, 10, 0.5)]
    for total, warmup, min_f in configs:
        on = f"total_steps={total}, warmup_steps={warmup}, min_factor={min_f}"
        steps = range(total + 3)
        values = []
        for st in steps:
            v = _call("warmup_cosine", fn, st, total, warmup, min_f)
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise CheckFailed(f"warmup_cosine returned a {type(v).__name__} at step {st} ({on}); it "
                                  "should return a number, the factor that multiplies the peak learning rate")
            values.append(float(v))
        want = [warmup_cosine(st, total, warmup, min_f) for st in steps]
        wrong = [st for st in steps if not math.isclose(values[st], want[st], rel_tol=1e-9, abs_tol=1e-12)]
        if not wrong:
            continue
        for mutant, msg in _schedule_mutants(total, warmup, min_f):
            mv = [mutant(st) for st in steps]
            if all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(mv, want)):
                continue
            if all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(mv, values)):
                raise CheckFailed(f"the schedule is wrong ({on}): {msg}")
        st = wrong[0]
        raise CheckFailed(f"the factor is wrong at {len(wrong)} of {len(want)} steps ({on}); the first is "
                          f"step {st}: got {values[st]:.6g}, expected {want[st]:.6g}. Warm-up: (step + 1) / "
                          "warmup_steps while step < warmup_steps; then min_factor + (1 - min_factor) * 0.5 "
                          "* (1 + cos(pi * progress)), progress = min(1, (step - warmup_steps) / "
                          "(total_steps - warmup_steps))")
    _ok("check_warmup_cosine", "equal to vitlearn.training.warmup_cosine at every step (and 3 past the end) "
                               f"of {len(configs)} schedules")


def _kind(name: str, p: torch.Tensor) -> str:
    if name.endswith("bias"):
        return "bias"
    if "norm" in name:
        return "LayerNorm gain"
    if "pos" in name:
        return "position embedding"
    if "cls" in name or "token" in name:
        return "[CLS] token"
    return "weight matrix" if p.ndim >= 2 else "1-D parameter"


@_check
def check_weight_decay_groups(model: nn.Module, decay, no_decay) -> None:
    """The two parameter lists built for AdamW: decay = weight matrices only; the rest no_decay."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {}
    for label, group in (("decay", decay), ("no_decay", no_decay)):
        if iter(group) is group if hasattr(group, "__iter__") else False:
            raise CheckFailed(f"{label} is a {type(group).__name__}, a one-shot iterator: whoever reads it "
                              "first "
                              "(this check, or AdamW when it builds its groups) empties it, and the second "
                              "finds no parameters. Make it a list: list(filter(...)) or [p for n, p in "
                              "model.named_parameters() if ...]")
        try:
            items = list(group)
        except TypeError as err:
            raise CheckFailed(f"{label} should be a list of the model's parameters, got a "
                              f"{type(group).__name__}") from err
        for p in items:
            if not isinstance(p, torch.Tensor):
                raise CheckFailed(f"{label} should hold parameters (tensors), but it holds a "
                                  f"{type(p).__name__}: use model.parameters() or the p of "
                                  "model.named_parameters(), not the names")
            if id(p) not in names:
                raise CheckFailed(f"{label} holds a tensor of shape {list(p.shape)} that is not a parameter "
                                  "of this model: build the lists from model.parameters()")
        groups[label] = {id(p) for p in items}
    both = groups["decay"] & groups["no_decay"]
    if both:
        raise CheckFailed(f"{len(both)} parameter(s) are in both lists, e.g. {names[next(iter(both))]}: each "
                          "parameter belongs to exactly one group")
    ref = make_optimizer(model, lr=1e-3, weight_decay=0.05).param_groups
    want_decay, want_no = {id(p) for p in ref[0]["params"]}, {id(p) for p in ref[1]["params"]}
    neither = (want_decay | want_no) - groups["decay"] - groups["no_decay"]
    if neither:
        n = sorted(names[i] for i in neither)
        raise CheckFailed(f"{len(n)} parameter(s) are in neither list, e.g. {n[:3]}: AdamW would never "
                          "update them; put every parameter in one of the two groups")
    params = dict(model.named_parameters())
    wrongly = sorted(names[i] for i in groups["decay"] - want_decay)
    if wrongly:
        kinds = sorted({_kind(n, params[n]) for n in wrongly})
        raise CheckFailed(f"weight decay is applied to {len(wrongly)} tensor(s) that should not be decayed "
                          f"({', '.join(kinds)}), e.g. {wrongly[:3]}: decay pulls them towards 0, which only "
                          "hurts (a zero bias or LayerNorm gain, a washed-out [CLS] token or position "
                          "table). Decay only the weight matrices of the Linear layers (p.ndim == 2); put "
                          "the rest in no_decay")
    missed = sorted(names[i] for i in groups["no_decay"] - want_no)
    if missed:
        raise CheckFailed(f"{len(missed)} weight matrix(es) are not decayed, e.g. {missed[:3]}: the weights "
                          "of the Linear layers (p.ndim == 2) go in the decay group")
    _ok("check_weight_decay_groups", "the same groups as vitlearn.training.make_optimizer: "
                                     f"{len(want_decay)} weight matrices decayed, {len(want_no)} biases, "
                                     "gains, [CLS] and position tensors not")


@_check
def check_schedule_numbers(*, steps_per_epoch, total_steps, warmup_steps, lr_halfway, n_train, batch_size,
                           epochs, warmup_epochs, peak_lr, min_factor) -> None:
    """The numbers of 08's exercise, against counted batches and a real LambdaLR driven halfway."""
    labels = torch.zeros(n_train, dtype=torch.uint8)
    batches = sum(1 for _ in iterate_batches(labels, labels, batch_size, drop_last=True))
    on = f"n_train={n_train}, batch_size={batch_size}"
    _check_int("steps_per_epoch", steps_per_epoch, batches, on=on, mutants=[
        (math.ceil(n_train / batch_size), "the last, partial batch is counted, but fit drops it "
                                          "(drop_last): n_train // batch_size")])
    total = epochs * batches
    _check_int("total_steps", total_steps, total, on=f"{on}, epochs={epochs}", mutants=[
        (batches, "that is one epoch; total_steps = epochs * steps_per_epoch"),
        (epochs * math.ceil(n_train / batch_size), "the partial batches are counted: use n_train // "
                                                   "batch_size")])
    warm = max(1, round(warmup_epochs * batches))
    _check_int("warmup_steps", warmup_steps, warm, on=f"{on}, warmup_epochs={warmup_epochs}", mutants=[
        (round(warmup_epochs), "warmup_steps counts optimizer steps, not epochs: round(warmup_epochs * "
                               "steps_per_epoch)"),
        (int(warmup_epochs * batches), "use round(), not int(): fit rounds to the nearest step")])
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: warmup_cosine(st, total, warm, min_factor))
    for _ in range(total // 2):
        opt.step()
        sched.step()
    want = opt.param_groups[0]["lr"]
    if isinstance(lr_halfway, torch.Tensor):
        lr_halfway = lr_halfway.item()
    if not isinstance(lr_halfway, numbers.Real) or not math.isclose(lr_halfway, want, rel_tol=1e-9):
        factor = warmup_cosine(total // 2, total, warm, min_factor)
        msgs = [(factor, "this is the schedule's factor: multiply it by peak_lr"),
                (peak_lr * warmup_cosine(total // 2 - 1, total, warm, min_factor),
                 f"off by one step: after {total // 2} scheduler steps the factor is f({total // 2})"),
                (peak_lr * 0.5 * (1 + math.cos(math.pi * 0.5)), "min_factor and the warm-up are ignored: "
                                                                "use the schedule warmup_cosine(total_steps "
                                                                "// 2, total_steps, warmup_steps, "
                                                                "min_factor)")]
        hint = next((m for v, m in msgs
                     if isinstance(lr_halfway, numbers.Real) and math.isclose(lr_halfway, v, rel_tol=1e-9)),
                    "lr_halfway = peak_lr * warmup_cosine(total_steps // 2, total_steps, warmup_steps, "
                    "min_factor)")
        raise CheckFailed(f"lr_halfway = {lr_halfway!r}, but a LambdaLR driven for {total // 2} steps gives "
                          f"{want:.6g}: {hint}")
    _ok("check_schedule_numbers", f"{batches} steps per epoch (counted), {total} in all, {warm} of warm-up; "
                                  f"the learning rate halfway, {want:.6f}, equals a real LambdaLR's")
