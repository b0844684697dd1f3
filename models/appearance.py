"""Per-image appearance codes (NeRF-W's appearance embedding, ``--appearance_dim``).

Real captures drift in exposure and white balance from frame to frame. Each training image gets a
learned code of ``appearance_dim`` floats that a field's colour head takes beside the view direction
(never its density), so the drift goes into the codes instead of into the scene. Views that are not
training images (held-out views, render paths, the viewer, mesh colours) have no code of their own
and use the mean of the training codes.

The protocol between the parts: rays carry ``Rays.image`` (the training image of each ray, or None);
the renderer asks the field for the codes of those images (``ray_codes``) and hands them to
``field(x, d, code)`` laid out like the directions; it never looks inside a code.
"""
from torch import nn


def make_appearance(n_images, dim):
    """The codes of ``n_images`` training images: ``nn.Embedding(n_images, dim)``, all zero at the
    start (every image begins at the mean; the colour layer's code weights are random, so the codes
    get gradients from the first step)."""
    if n_images <= 0:
        raise ValueError(f"appearance codes need the number of training images, got n_images={n_images}")
    emb = nn.Embedding(int(n_images), int(dim))
    nn.init.zeros_(emb.weight)
    return emb


class AppearanceCodes:
    """What a field with codes adds (a mixin for ``nn.Module`` fields that set ``appearance_dim``
    and, when it is positive, own ``appearance`` from ``make_appearance``)."""

    appearance_dim = 0

    def appearance_codes(self, image):
        """Codes ``(N_rays, appearance_dim)`` of training images ``image`` ``(N_rays,)`` (long);
        None when ``image`` is None or the field has no codes."""
        return None if image is None or not self.appearance_dim else self.appearance(image)

    def mean_code(self):
        """The code of a view that is not a training image: the mean training code ``(appearance_dim,)``."""
        return self.appearance.weight.mean(0)


def ray_codes(field, rays):
    """Per-ray codes ``(N_rays, appearance_dim)`` for ``rays`` (``Rays``) from ``field``, or None when
    the rays are not from training images or the field has no codes (any field without
    ``appearance_dim`` counts as one without codes)."""
    if rays.image is None or not getattr(field, "appearance_dim", 0):
        return None
    return field.appearance_codes(rays.image)
