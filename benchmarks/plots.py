"""The benchmarks' one plot: held-out PSNR against training time, one line per run."""


def plot_psnr_curves(curves, path, title="", xlabel="training time (s)"):
    """Write a PNG of ``curves``: ``{label: [(time, psnr), ...]}``, times in the unit of ``xlabel``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out PSNR (dB)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
