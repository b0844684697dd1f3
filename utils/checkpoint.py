"""The one checkpoint loader: Lightning checkpoints and weights-only files, with readable errors.

A Lightning checkpoint (``ckpts/EXP/*.ckpt``) holds ``state_dict`` (keys ``nerf_coarse.*``,
``nerf_fine.*``), the training flags under ``hyper_parameters``, and the optimizer/loop state.
A weights-only file (``save_weights_only.py``) holds ``state_dict`` and ``hparams`` only,
plus optional ``extras`` (e.g. the poses of an LLFF render path).
"""
import os
import re

import torch

from utils.errors import UserError

FIELD_PREFIXES = {"coarse": "nerf_coarse", "fine": "nerf_fine", "occupancy": "occupancy"}
WEIGHTS_FORMAT = "nerf_pl-weights-v1"


def load_checkpoint(path):
    """Read a checkpoint onto the CPU and check it is one of ours.

    Returns:
        dict with ``state_dict``, ``hparams`` (dict, may be empty), ``extras`` (dict), ``lightning``
        (True for a full training checkpoint) and ``raw`` (the loaded object).
    Raises:
        UserError for a missing, unreadable or foreign file.
    """
    if not path or not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a bad file
        raise UserError(f"cannot read checkpoint {path} (not a PyTorch file, or truncated): "
                        f"{type(err).__name__}") from None
    state = raw.get("state_dict") if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(FIELD_PREFIXES["coarse"] + ".") for k in state):
        raise UserError(f"{path} is not a NeRF checkpoint of this repo (no '{FIELD_PREFIXES['coarse']}' weights)")
    hparams = raw.get("hyper_parameters") or raw.get("hparams") or {}
    return {"state_dict": state, "hparams": dict(hparams), "extras": raw.get("extras", {}),
            "lightning": "optimizer_states" in raw, "raw": raw}


def field_state(state_dict, level, prefixes_to_ignore=()):
    """The weights of one field (``"coarse"`` / ``"fine"``), prefix stripped, minus ignored keys.

    A key is ignored when its full name (e.g. ``nerf_fine.sigma.weight``) starts with one of
    ``prefixes_to_ignore``.
    """
    prefix = FIELD_PREFIXES[level] + "."
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix) and not any(k.startswith(p) for p in prefixes_to_ignore)}


def infer_field_hparams(state_dict):
    """Network-shape flags read off the weights. For the seed's NeRF: net_depth, net_width,
    N_emb_xyz, N_emb_dir and has_fine (N_importance > 0 or not); for the fast path: fast=True.
    Both: appearance_dim (0 without codes) and, with codes, n_train_images."""
    coarse = field_state(state_dict, "coarse")
    codes = coarse.get("appearance.weight")
    appearance = {"appearance_dim": 0} if codes is None else \
        {"appearance_dim": int(codes.shape[1]), "n_train_images": int(codes.shape[0])}
    if "encoding.table" in coarse:
        return {"fast": True, "has_fine": False, "hash_entries": int(coarse["encoding.table"].shape[0]), **appearance}
    layer_ids = {int(m.group(1)) for k in coarse for m in [re.match(r"xyz_layers\.(\d+)\.", k)] if m}
    if not layer_ids or "xyz_layers.0.0.weight" not in coarse or "dir_layer.0.weight" not in coarse:
        raise UserError("checkpoint weights do not have the layout of models.nerf.NeRF or models.ngp.NGPField")
    width, in_xyz = coarse["xyz_layers.0.0.weight"].shape
    in_dir = coarse["dir_layer.0.weight"].shape[1] - width - appearance["appearance_dim"]
    return {"fast": False, "net_depth": max(layer_ids) + 1, "net_width": int(width),
            "N_emb_xyz": (int(in_xyz) // 3 - 1) // 2, "N_emb_dir": (int(in_dir) // 3 - 1) // 2,
            "has_fine": any(k.startswith(FIELD_PREFIXES["fine"] + ".") for k in state_dict), **appearance}


def describe(h):
    """One phrase for a model shape (``infer_field_hparams`` output)."""
    codes = ""
    if h.get("appearance_dim"):
        codes = f", appearance codes {h.get('n_train_images', '?')} x {h['appearance_dim']}"
    if h.get("fast"):
        return f"a fast-path hash-grid field ({h.get('hash_entries', '?')} hash entries){codes}"
    return (f"{h['net_depth']}x{h['net_width']} MLPs, {h['N_emb_xyz']}/{h['N_emb_dir']} encoding frequencies, "
            f"{'coarse + fine' if h['has_fine'] else 'coarse only'}{codes}")


def _module_shape(fields):
    """``infer_field_hparams``-style description of the modules the flags built."""
    coarse = fields["coarse"]
    codes = getattr(coarse, "appearance", None)
    appearance = {"appearance_dim": 0} if codes is None else \
        {"appearance_dim": codes.embedding_dim, "n_train_images": codes.num_embeddings}
    if hasattr(coarse, "encoding"):
        return {"fast": True, "has_fine": False, "hash_entries": int(coarse.encoding.table.shape[0]), **appearance}
    return {"fast": False, "net_depth": coarse.depth, "net_width": coarse.width,
            "N_emb_xyz": coarse.embed_xyz.n_freqs, "N_emb_dir": coarse.embed_dir.n_freqs, "has_fine": "fine" in fields,
            **appearance}


def load_fields_state(fields, state_dict, prefixes_to_ignore=(), source="checkpoint"):
    """Copy weights (and the fast path's occupancy grid) into ``fields`` (dict level -> module),
    skipping keys that start with one of ``prefixes_to_ignore``.

    Weights not ignored must match the modules exactly; otherwise a UserError says which
    shape the checkpoint has and which the flags asked for.
    """
    for level, module in fields.items():
        if any(FIELD_PREFIXES[level].startswith(p) for p in prefixes_to_ignore):
            continue  # the whole level is ignored (e.g. --prefixes_to_ignore nerf): it starts afresh
        sd = field_state(state_dict, level, prefixes_to_ignore)
        ignored = any(p.startswith(FIELD_PREFIXES[level]) for p in prefixes_to_ignore)
        try:
            if not sd and not ignored:
                raise RuntimeError(f"no {FIELD_PREFIXES[level]} weights")
            module.load_state_dict(sd, strict=not ignored)
        except RuntimeError:
            found, wanted = infer_field_hparams(state_dict), _module_shape(fields)
            raise UserError(f"{source} has {describe(found)} but the flags ask for {describe(wanted)}: "
                            f"drop the shape flags (--net_depth/--net_width/--N_emb_*/--N_importance/--fast/"
                            f"--appearance_dim) "
                            f"to use the checkpoint's") from None


# Flags a checkpoint fixes: the networks' shape and how rays are sampled, and the scene it was trained on
# (n_train_images is no flag: train.py stores the number of training images, which sizes the appearance codes).
MODEL_KEYS = ("net_depth", "net_width", "N_emb_xyz", "N_emb_dir", "N_samples", "N_importance", "use_disp",
              "fast", "aabb", "grid_resolution", "march_steps", "hash_levels", "hash_log2_size", "hash_max_res",
              "appearance_dim", "n_train_images")
SCENE_KEYS = ("dataset_name", "root_dir", "img_wh", "spheric_poses", "spheric_bounds", "ndc_viewdirs", "unbounded", "white_back", "llff_holdout")


def merge_hparams(hparams, explicit, ckpt):
    """Fill model and scene flags from the checkpoint, except those given on the command line.

    Args:
        hparams: parsed flags (a Namespace, modified in place and returned).
        explicit: names of the flags the user typed (see ``opt.parse_args``); these win.
        ckpt: ``load_checkpoint`` output. Without stored flags, the network shape is read off
            the weights.
    """
    stored = dict(ckpt["hparams"])
    if not stored:
        shape = infer_field_hparams(ckpt["state_dict"])
        if shape["fast"]:
            raise UserError(f"{hparams.ckpt_path} holds fast-path weights without their flags: "
                            f"re-export it with save_weights_only.py")
        stored = {k: shape[k] for k in ("net_depth", "net_width", "N_emb_xyz", "N_emb_dir", "appearance_dim",
                                        "n_train_images") if k in shape}
        if not shape["has_fine"]:
            stored["N_importance"] = 0
    for key in MODEL_KEYS + SCENE_KEYS:
        if key in stored and key not in explicit:
            value = stored[key]
            setattr(hparams, key, list(value) if isinstance(value, tuple) else value)
    if getattr(hparams, "appearance_dim", 0) and not getattr(hparams, "n_train_images", None):
        raise UserError(f"{hparams.ckpt_path} was trained without appearance codes: drop --appearance_dim")
    return hparams
