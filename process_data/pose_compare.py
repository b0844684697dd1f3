"""How close two sets of camera poses of the same photos are, up to the similarity that SfM leaves
free (scale, rotation, translation of the whole scene): the figures of ``benchmarks/pose_quality.py``.

Poses are dicts ``name -> (R, centre)``: ``R`` ``(3, 3)`` world-to-camera rotation (COLMAP's
``cam_from_world``: camera x right, y down, z forward), ``centre`` ``(3,)`` in world coordinates.
"""
import numpy as np


def umeyama(src, dst):
    """Similarity ``(s, R, t)`` minimizing ``|s R src + t - dst|^2`` (Umeyama 1991). src, dst: ``(N, 3)``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    U, D, Vt = np.linalg.svd(cov)
    E = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:  # a reflection is not a pose change
        E[2, 2] = -1
    R = U @ E @ Vt
    s = np.trace(np.diag(D) @ E) / ((src - mu_s) ** 2).sum(1).mean()
    return s, R, mu_d - s * R @ mu_s


def model_poses(rec):
    """``name -> (R, centre)`` of the registered images of a pycolmap Reconstruction."""
    out = {}
    for im in rec.images.values():
        if im.has_pose:
            M = im.cam_from_world().matrix()  # (3, 4) [R | t]
            out[im.name] = (M[:, :3], -M[:, :3].T @ M[:, 3])
    return out


def rotation_degrees(Ra, Rb):
    """The angle of ``Ra Rb^T`` in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra @ Rb.T) - 1) / 2, -1.0, 1.0))))


def mean_rotation(ours, reference):
    """The rotation ``A`` ``(3, 3)`` that best maps our world onto the reference's for the cameras'
    orientations: ``R_ours[i] A^T ~ R_ref[i]`` in the least squares (chordal) sense. ours, reference:
    ``(N, 3, 3)`` world-to-camera rotations."""
    M = np.einsum("nji,njk->ik", ours, reference)  # sum of R_ours^T R_ref: A^T's estimate before projection
    U, _, Vt = np.linalg.svd(M)
    E = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return (U @ E @ Vt).T


def llff_rotation_errors(ours, reference):
    """Per camera, degrees between two sets of LLFF poses' orientations after the rotation that best
    maps ours onto the reference's (``mean_rotation``). ours, reference: ``(N, 15+)`` rows of
    poses_bounds.npy (3x5 blocks whose first 3 columns are camera-to-world axes down, right, back)."""
    rot_ours = np.asarray(ours)[:, :15].reshape(-1, 3, 5)[:, :, :3]
    rot_ref = np.asarray(reference)[:, :15].reshape(-1, 3, 5)[:, :, :3]
    # transposed: world-to-camera; any fixed change of the camera's axes cancels in the comparison
    A = mean_rotation(rot_ours.transpose(0, 2, 1), rot_ref.transpose(0, 2, 1))
    return np.array([rotation_degrees(a.T @ A.T, b.T) for a, b in zip(rot_ours, rot_ref)])


def compare_poses(ours, reference):
    """Errors of ``ours`` against ``reference`` over the names both hold: camera centres after a
    similarity (Umeyama) maps ours onto the reference's, orientations after the rotation that best
    maps them (``mean_rotation``; a short arc of centres, nearly on a line, leaves the similarity's
    rotation about that line loose, the orientations do not).

    Returns a dict: ``n`` (names compared), ``centre_mean`` / ``centre_median`` (centre error in %
    of the orbit's radius: the mean distance of the reference centres from their mean),
    ``rotation_mean`` / ``rotation_median`` (degrees); None when fewer than 3 names are shared.
    """
    names = sorted(set(ours) & set(reference))
    if len(names) < 3:
        return None
    c_ours = np.array([ours[n][1] for n in names])
    c_ref = np.array([reference[n][1] for n in names])
    s, R, t = umeyama(c_ours, c_ref)
    radius = np.linalg.norm(c_ref - c_ref.mean(0), axis=1).mean()
    centre = np.linalg.norm(s * c_ours @ R.T + t - c_ref, axis=1) / radius * 100
    # our world-to-camera rotation in the reference's world is R_ours A^T
    A = mean_rotation(np.array([ours[n][0] for n in names]), np.array([reference[n][0] for n in names]))
    rotation = np.array([rotation_degrees(ours[n][0] @ A.T, reference[n][0]) for n in names])
    return {"n": len(names), "centre_mean": float(centre.mean()), "centre_median": float(np.median(centre)),
            "rotation_mean": float(rotation.mean()), "rotation_median": float(np.median(rotation))}
