"""Networks, encodings and the volume renderer."""
from models.nerf import NeRF


def build_fields(hparams):
    """The radiance fields the flags describe: ``{"coarse": NeRF, "fine": NeRF}`` (no ``"fine"``
    when ``N_importance == 0``). ``hparams`` is a namespace or a dict of flags."""
    get = hparams.get if isinstance(hparams, dict) else lambda k, d=None: getattr(hparams, k, d)
    kwargs = dict(depth=get("net_depth", 8), width=get("net_width", 256),
                  n_freqs_xyz=get("N_emb_xyz", 10), n_freqs_dir=get("N_emb_dir", 4))
    fields = {"coarse": NeRF(**kwargs)}
    if get("N_importance", 0) > 0:
        fields["fine"] = NeRF(**kwargs)
    return fields
