"""Draw ViT.png, the architecture figure at the top of the README, from a real MNIST digit.

    VITLEARN_DATA_DIR=/path/to/data python tools/make_vit_png.py [--out ViT.png] [--index 0]

The shapes and sizes in the labels are read from ``vitlearn.ViT()`` (the default model), so
the picture stays true when the defaults change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

import vitlearn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 100.0, 52.0    # drawing units; 1 unit = 0.1 inch
COLORS = dict(patch="#f7c9d4", token="#cdb8ea", cls="#9f7fd6", pos="#f3a8c8", encoder="#f3f0e6",
              norm="#fbe7a1", attn="#c8e6c4", mlp="#c5dcf5", head="#fcd2a2", out="#ffffff",
              edge="#444444", note="#555555", grid="#ff8c1a")


def box(ax, x, y, w, h, text="", *, color, fontsize=9, weight="normal", radius=0.6, lw=1.0, z=2,
        text_color="black"):
    """A rounded box with (x, y) its lower-left corner and centred text."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}",
                                facecolor=color, edgecolor=COLORS["edge"], lw=lw, zorder=z))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
                fontweight=weight, zorder=z + 1, color=text_color, linespacing=1.25)


def arrow(ax, start, end, *, color=COLORS["edge"], lw=1.1, style="-|>", z=1, **kwargs):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, lw=lw,
                                 color=color, zorder=z, shrinkA=0, shrinkB=0, **kwargs))


def note(ax, x, y, text, *, ha="center", va="center", fontsize=8, color=COLORS["note"], **kwargs):
    ax.text(x, y, text, ha=ha, va=va, fontsize=fontsize, color=color, **kwargs)


def image(ax, pixels, x, y, size, *, z=3, frame=True):
    ax.imshow(pixels, cmap="gray", extent=(x, x + size, y, y + size), zorder=z,
              interpolation="nearest", vmin=0, vmax=255)
    if frame:
        ax.add_patch(Rectangle((x, y), size, size, fill=False, lw=0.8, edgecolor=COLORS["edge"],
                               zorder=z + 1))


def draw_input(ax, digit: torch.Tensor, patch: int, x0: float, y0: float, size: float) -> None:
    """The digit with its patch grid drawn over it."""
    image(ax, digit.numpy(), x0, y0, size)
    grid = digit.shape[0] // patch
    for k in range(1, grid):
        t = k * size / grid
        ax.plot([x0 + t, x0 + t], [y0, y0 + size], color=COLORS["grid"], lw=1.1, zorder=5)
        ax.plot([x0, x0 + size], [y0 + t, y0 + t], color=COLORS["grid"], lw=1.1, zorder=5)


def draw_encoder_detail(ax, cfg: dict, x0: float, y0: float, w: float) -> tuple[float, float]:
    """One pre-norm encoder block, repeated L times. Returns the (bottom, top) of its frame."""
    d, heads, hidden = cfg["embed_dim"], cfg["num_heads"], int(cfg["embed_dim"] * cfg["mlp_ratio"])
    cx, bw = x0 + w / 2 - 1.5, w - 9
    bx = cx - bw / 2
    note(ax, cx, y0, f"embedded patches  [B, {1 + cfg['n']}, {d}]", fontsize=8.5)
    frame_bottom, frame_top = y0 + 2.2, y0 + 39.3
    ax.add_patch(FancyBboxPatch((x0 + 2, frame_bottom), w - 2, frame_top - frame_bottom,
                                boxstyle="round,pad=0,rounding_size=1.2", facecolor=COLORS["encoder"],
                                edgecolor=COLORS["edge"], lw=1.2, zorder=0))
    note(ax, x0 + 3.2, frame_top - 2.0, f"L = {cfg['depth']} ×", fontsize=12, color="black",
         ha="left", fontweight="bold")
    rx = bx + bw + 2.8                              # x of the residual lines
    steps = [(y0 + 5.0, 2.6, "LayerNorm", "norm"),
             (y0 + 10.0, 4.2, f"Multi-head self-attention\n{heads} heads of {d // heads} dims", "attn"),
             (y0 + 21.0, 2.6, "LayerNorm", "norm"),
             (y0 + 26.0, 4.2, f"MLP  {d} → {hidden} → {d}\n(GELU)", "mlp")]
    sums = [y0 + 17.6, y0 + 33.6]
    arrow(ax, (cx, y0 + 1.0), (cx, steps[0][0]))
    for i, (y, h, text, color) in enumerate(steps):
        box(ax, bx, y, bw, h, text, color=COLORS[color], fontsize=8.5)
        top = y + h
        target = steps[i + 1][0] if i in (0, 2) else sums[i // 2] - 0.9
        arrow(ax, (cx, top), (cx, target))
    for i, s in enumerate(sums):
        ax.add_patch(plt.Circle((cx, s), 0.9, facecolor="white", edgecolor=COLORS["edge"], lw=1.0, zorder=3))
        note(ax, cx, s - 0.05, "+", fontsize=10, color="black", fontweight="bold", zorder=4)
        start = y0 + 3.2 if i == 0 else sums[0] + 1.6
        ax.plot([cx, rx, rx], [start, start, s], color=COLORS["edge"], lw=1.1, zorder=1)
        arrow(ax, (rx, s), (cx + 0.9, s))
        note(ax, rx + 0.6, (start + s) / 2, "residual", fontsize=7.5, ha="left", rotation=90)
        if i == 0:
            arrow(ax, (cx, s + 0.9), (cx, steps[2][0]))
    arrow(ax, (cx, sums[1] + 0.9), (cx, frame_top + 2.0))
    note(ax, cx, frame_top + 3.0, f"[B, {1 + cfg['n']}, {d}]", fontsize=8.5)
    return frame_bottom, frame_top


def draw(digit: torch.Tensor, label: str, out: Path, dpi: int) -> None:
    model = vitlearn.ViT()
    cfg = dict(vars(model.config), n=model.num_patches)  # model.config is a ViTConfig dataclass
    p, d, n = cfg["patch_size"], cfg["embed_dim"], model.num_patches
    params = sum(t.numel() for t in model.parameters())
    classes = cfg["num_classes"]

    fig = plt.figure(figsize=(WIDTH / 10, HEIGHT / 10))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_axis_off()

    # 1. the digit and its patches ------------------------------------------------------
    draw_input(ax, digit, p, 2.0, 4.6, 10.5)
    note(ax, 7.25, 3.2, "input image", fontsize=9, color="black")
    note(ax, 7.25, 1.6, "[B, 1, 28, 28]", fontsize=8.5)
    pitch, tile = 2.35, 1.95
    col = lambda j: 26.0 + pitch * j                # x centre of token j (0 = [CLS])
    patches = vitlearn.patchify(digit[None, None].float(), p)[0]              # [N, P*P]
    for j in range(1, n + 1):
        image(ax, patches[j - 1].reshape(p, p).numpy(), col(j) - tile / 2, 5.0, tile)
        note(ax, col(j), 4.2, str(j - 1), fontsize=6.5, va="top")
    arrow(ax, (13.1, 9.8), (col(1) - tile / 2 - 0.5, 6.0), connectionstyle="arc3,rad=-0.3")
    note(ax, 19.5, 11.6, f"cut into\n{p}×{p} patches", fontsize=8)
    note(ax, (col(1) + col(n)) / 2, 1.8,
         f"{n} patches in reading order, each flattened to {p * p * cfg['in_chans']} numbers:  "
         f"[B, {n}, {p * p * cfg['in_chans']}]", fontsize=8.5)

    # 2. linear projection -----------------------------------------------------------------
    left, right = col(1) - tile / 2 - 0.3, col(n) + tile / 2 + 0.3
    for j in range(1, n + 1):
        arrow(ax, (col(j), 7.3), (col(j), 9.3), lw=0.8)
    box(ax, left, 9.3, right - left, 3.0,
        f"Linear projection of flattened patches  {p * p} → {d}   [B, {n}, {d}]",
        color=COLORS["patch"], fontsize=8.5)

    # 3. tokens: [CLS] + patch embeddings, + position embeddings -----------------------------
    ty, py = 15.6, 19.0
    for j in range(n + 1):
        if j:
            arrow(ax, (col(j), 12.3), (col(j), ty), lw=0.8)
        box(ax, col(j) - tile / 2, ty, tile, 2.2, "*" if j == 0 else "",
            color=COLORS["cls"] if j == 0 else COLORS["token"], radius=0.35, fontsize=11, weight="bold")
        box(ax, col(j) - tile / 2, py, tile, 2.2, str(j), color=COLORS["pos"], radius=0.35, fontsize=7)
        note(ax, col(j), py - 0.55, "+", fontsize=7, color="black")
    note(ax, col(0), ty - 1.0, "[CLS]", fontsize=7.5, color="black")
    note(ax, col(0) - 1.6, ty + 1.1, f"learned [CLS] + {n} patch\ntokens  [B, {1 + n}, {d}]",
         fontsize=8.5, ha="right", color="black")
    note(ax, col(0) - 1.6, py + 1.1, f"+ position embeddings\n[1, {1 + n}, {d}]", fontsize=8.5,
         ha="right", color="black")

    # 4. the encoder (summary box), linked to its detail on the right -----------------------
    ey, eh = 24.2, 7.0
    for j in range(n + 1):
        arrow(ax, (col(j), py + 2.2), (col(j), ey), lw=0.8)
    box(ax, col(0) - tile / 2, ey, col(n) - col(0) + tile, eh, "", color=COLORS["encoder"], lw=1.3)
    note(ax, (col(0) + col(n)) / 2, ey + eh * 0.64, "Transformer encoder", fontsize=12, color="black",
         fontweight="bold")
    note(ax, (col(0) + col(n)) / 2, ey + eh * 0.27,
         f"{cfg['depth']} blocks, {cfg['num_heads']} heads: every token attends to every token\n"
         f"→ [B, {1 + n}, {d}]", fontsize=8.5)

    # 5. MLP head on the [CLS] output, and the prediction ------------------------------------
    hx, hy, hw, hh = col(0) - tile / 2, ey + eh + 3.4, 19.0, 4.6
    arrow(ax, (col(0), ey + eh), (col(0), hy))
    note(ax, col(0) + 0.8, ey + eh + 1.7, f"[CLS] output  [B, {d}]", fontsize=8, ha="left")
    box(ax, hx, hy, hw, hh, f"MLP head\nLayerNorm, Linear {d} → {classes}", color=COLORS["head"],
        fontsize=9)
    arrow(ax, (hx + hw, hy + hh / 2), (hx + hw + 3.5, hy + hh / 2))
    box(ax, hx + hw + 3.5, hy, 14.0, hh, f"class “{label}”\nlogits [B, {classes}]", color=COLORS["out"],
        fontsize=9, weight="bold")

    # title and model summary (top left) ----------------------------------------------------
    ax.text(2.0, HEIGHT - 2.6, "Vision Transformer (ViT) on MNIST", fontsize=15, fontweight="bold",
            va="center")
    note(ax, 2.0, HEIGHT - 5.6,
         f"vitlearn.ViT(): patch {p}, D = {d}, depth {cfg['depth']}, {cfg['num_heads']} heads, "
         f"MLP {int(d * cfg['mlp_ratio'])}  ·  {params:,} parameters  ·  B = batch size",
         fontsize=8.5, ha="left")

    # encoder detail on the right ------------------------------------------------------------
    dx = 72.0
    bottom, top = draw_encoder_detail(ax, cfg, dx, 4.0, WIDTH - dx - 1.0)
    right_edge = col(n) + tile / 2
    for y_from, y_to in ((ey, bottom), (ey + eh, top)):
        ax.plot([right_edge, dx + 2.0], [y_from, y_to], color="#999999", lw=0.8, ls="--", zorder=0)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white")
    plt.close(fig)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "ViT.png")
    parser.add_argument("--index", type=int, default=0, help="which MNIST test digit to draw")
    parser.add_argument("--dpi", type=int, default=160, help="160 gives a 1600-pixel-wide picture")
    args = parser.parse_args(argv)
    test = vitlearn.load_dataset("mnist", train=False)
    if not 0 <= args.index < len(test):
        parser.error(f"--index must be in 0..{len(test) - 1}")
    digit, label = test.images[args.index], test.classes[int(test.labels[args.index])]
    draw(digit, label, args.out, args.dpi)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
