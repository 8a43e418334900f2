"""Writing a CT slice profile: its CSV, summary and picture (Roth et al. 2015, Fig. 7 style).

Left: a coronal view of the volume (a thick central slab, soft-tissue window); right: each
class's probability per slice, on the same z axis (superior at the top), with the decoded
regions as coloured bands.
"""
from __future__ import annotations

import json

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radroute.inference.profile import Profile

if TYPE_CHECKING:
    from radroute.io.types import Volume

#: one colour per region name, fixed so that plots of different volumes compare
REGION_COLOURS = {
    "head": "#1f77b4", "neck": "#9467bd", "chest": "#2ca02c", "abdomen": "#ff7f0e",
    "pelvis": "#d62728", "lower_limb": "#8c564b", "upper_limb": "#e377c2", "spine": "#7f7f7f",
}


def coronal_view(voxels: np.ndarray, slab_fraction: float = 0.3) -> np.ndarray:
    """(Z, Y, X) HU -> (Z, X) [0, 1]: mean of the soft-tissue-windowed central coronal slab."""
    from radroute.io.windowing import window_array

    _, ny, _ = voxels.shape
    half = max(1, int(ny * slab_fraction / 2))
    mid = ny // 2
    slab = voxels[:, max(0, mid - half):mid + half, :]
    return window_array(slab, "soft_tissue").mean(axis=1)


def plot_profile(volume: "Volume", profile: Profile, path: str | Path, dpi: int = 110) -> Path:
    """Write the profile figure to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    z = np.asarray(profile.z_mm, dtype=float)
    axial = len(z) > 1 and np.ptp(z) > 1e-3
    if not axial:
        z = -np.arange(len(profile.labels), dtype=float)  # slice index, superior at the top
    dz = float(np.median(np.abs(np.diff(z)))) if len(z) > 1 else 1.0
    top, bottom = z[0] + dz / 2 * np.sign(z[0] - z[-1] or 1), z[-1] - dz / 2 * np.sign(z[0] - z[-1] or 1)
    width_mm = volume.voxels.shape[2] * float(volume.spacing[2])

    height_mm = abs(top - bottom) if axial else width_mm
    fig_h = 6.5
    img_w = float(np.clip(fig_h * 0.8 * width_mm / max(height_mm, 1e-6), 1.5, 7.0))  # true proportions
    fig, (ax_img, ax_p) = plt.subplots(1, 2, figsize=(img_w + 5.5, fig_h), sharey=True,
                                       gridspec_kw={"width_ratios": [img_w, 4.5]})
    ax_img.imshow(coronal_view(volume.voxels), cmap="gray", vmin=0, vmax=1, origin="upper",
                  extent=(0, width_mm, bottom, top), aspect="auto", interpolation="bilinear")
    ax_img.set_xlabel("patient right -> left (mm)")
    ax_img.set_ylabel("z (mm, superior at the top)" if axial else "slice (superior at the top)")
    ax_img.set_title("coronal view")

    for region in profile.regions:
        z0, z1 = z[region.slice_start], z[region.slice_end]
        lo, hi = min(z0, z1) - dz / 2, max(z0, z1) + dz / 2
        colour = REGION_COLOURS.get(region.name, "#bbbbbb")
        ax_p.axhspan(lo, hi, color=colour, alpha=0.12, lw=0)
        ax_p.text(1.01, (lo + hi) / 2, region.name, color=colour, va="center", ha="left",
                  fontsize=9, transform=ax_p.get_yaxis_transform(), clip_on=False)
    for k, name in enumerate(profile.classes):
        colour = REGION_COLOURS.get(name, None)
        ax_p.plot(profile.probabilities[:, k], z, color=colour, lw=0.8, alpha=0.45)
        ax_p.plot(profile.smoothed[:, k], z, color=colour, lw=2.0, label=name)
    ax_p.set_xlim(0, 1)
    ax_p.set_ylim(bottom, top)
    ax_p.set_xlabel("probability (thin: per slice, thick: smoothed)")
    ax_p.set_title(f"{profile.model} ({profile.model_version}): body part {profile.body_part}")
    ax_p.legend(loc="lower right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_profile(profile: Profile, volume: "Volume", out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
    """Write ``profile.csv``, ``summary.json`` and (``plot``) ``profile.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "profile.csv", "summary": out / "summary.json"}
    profile.write_csv(paths["csv"])
    paths["summary"].write_text(json.dumps(profile.summary(), indent=2) + "\n")
    if plot:
        paths["png"] = out / "profile.png"
        plot_profile(volume, profile, paths["png"])
    return paths
