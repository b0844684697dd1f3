"""The viewer's page: the model seen from the browser's camera, the training cameras, the scene box,
an optional mesh, and per-tab controls (resolution, time per frame, RGB/depth/opacity, snapshots,
camera-path keyframes). Built on viser: its web client ships in the wheel, so it works offline.
"""
import os
import socket
import threading
import time

import imageio.v2 as imageio
import numpy as np

from utils.errors import UserError
from viewer.camera import c2w_to_viser, fov_y_of, look_target, reference_K, up_direction
from viewer.paths import make_path, write_path
from viewer.render import MODES, ClientSession, picture

THUMB_W = 96  # width of the thumbnails on the training frusta
MAX_FRUSTA = 200  # more training cameras are shown every k-th


def port_free(host, port):
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host="127.0.0.1"):
    """A port free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port, host="0.0.0.0", flag="--port"):
    """UserError naming ``port`` and a free one near it when ``port`` is taken or invalid (``flag``:
    the option the user typed it with, so the hint names the right one)."""
    if not 0 < port < 65536:
        raise UserError(f"{flag} {port} is not a TCP port (1-65535)")
    if port_free(host, port):
        return
    free = next((p for p in range(port + 1, min(port + 200, 65536)) if port_free(host, p)), None)
    hint = f": try {flag} {free}" if free else ""
    raise UserError(f"port {port} is in use (another viewer or server?){hint}")


def load_mesh(path):
    """Vertices ``(V, 3)`` and faces ``(F, 3)`` of a triangle mesh file (.ply/.obj/...);
    UserError when it is missing or holds no triangles."""
    if not os.path.isfile(path):
        raise UserError(f"--mesh {path}: file not found")
    import open3d  # heavy: only when a mesh is asked for
    open3d.utility.set_verbosity_level(open3d.utility.VerbosityLevel.Error)
    mesh = open3d.io.read_triangle_mesh(path)
    verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(verts) == 0 or len(faces) == 0:
        raise UserError(f"--mesh {path} is not a triangle mesh (no faces read; give a .ply from extract_mesh.py)")
    return verts.astype(np.float32), faces.astype(np.uint32)


def thumbnail(rgb_flat, img_wh):
    """``(h, THUMB_W, 3)`` uint8 of an image ``(H*W, 3)`` float in [0, 1] (nearest pixels)."""
    W, H = img_wh
    img = rgb_flat.reshape(H, W, 3)
    w = min(THUMB_W, W)
    h = max(1, round(H * w / W))
    rows, cols = (np.arange(h) * H // h), (np.arange(w) * W // w)
    return (np.clip(np.asarray(img)[rows][:, cols], 0, 1) * 255 + 0.5).astype(np.uint8)


class ViewerServer:
    """A viser server showing ``renderer``'s model to every tab that opens it.

    Args:
        renderer: ``viewer.render.SceneRenderer``.
        port, host: where to listen (the port is checked first: ``check_port``).
        out_dir: where snapshots (PNG) and camera paths (JSON) go.
        mesh: ``(vertices, faces)`` to show, or None.
        aabb: ``[xmin, ymin, zmin, xmax, ymax, zmax]`` scene box to draw, or None.
    """

    def __init__(self, renderer, port=7007, host="0.0.0.0", out_dir="viewer_out", mesh=None, aabb=None,
                 max_width=512, frame_time=0.2, title="nerf_pl viewer"):
        import viser

        check_port(port, host)
        self.renderer, self.out_dir = renderer, out_dir
        self.defaults = {"max_width": int(max_width), "frame_time": float(frame_time), "mode": "rgb"}
        self.sessions = {}
        self.lock = threading.Lock()
        scene = renderer.scene
        self.poses = np.asarray(scene["poses"], dtype=np.float64)
        self.fov0 = fov_y_of(reference_K(scene), scene["img_wh"])
        self.up = up_direction(self.poses)
        self.has_mesh = mesh is not None
        renderer.calibrate(self.poses[0], self.fov0)
        # everything a tab needs exists before the server starts: a tab may connect at once
        self.server = viser.ViserServer(host=host, port=port, label=title, verbose=False)
        if self.server.get_port() != port:  # taken between the check and the bind
            self.server.stop()
            raise UserError(f"port {port} is in use: try --port {self.server.get_port()}")
        self.port = port
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self._build_scene(mesh, aabb)

    # ------------------------------------------------------------------ scene
    def _build_scene(self, mesh, aabb):
        sc, scene = self.server.scene, self.renderer.scene
        sc.set_up_direction(tuple(self.up))
        W, H = scene["img_wh"]
        radius = np.linalg.norm(self.poses[:, :, 3] - self.poses[:, :, 3].mean(0), axis=1).mean()
        size = 0.08 * max(radius, 1e-3) if len(self.poses) > 1 else 0.2
        step = max(1, len(self.poses) // MAX_FRUSTA)
        rgbs = scene.get("rgbs")
        for i in range(0, len(self.poses), step):
            wxyz, pos = c2w_to_viser(self.poses[i])
            # no picture on the first camera: the page opens there, and it would cover the render
            image = thumbnail(rgbs[i].cpu().numpy(), (W, H)) if rgbs is not None and i > 0 else None
            sc.add_camera_frustum(f"/cameras/{i:04d}", fov=self.fov0, aspect=W / H, scale=size, wxyz=wxyz,
                                  position=pos, image=image, color=(40, 90, 200), thickness=1.5,
                                  thickness_units="screen")
        if aabb is not None:
            lo, hi = np.asarray(aabb[:3], dtype=float), np.asarray(aabb[3:], dtype=float)
            sc.add_box("/scene_box", color=(230, 120, 20), dimensions=tuple(hi - lo), wireframe=True,
                       position=tuple((lo + hi) / 2))
        if mesh is not None:
            sc.add_mesh_simple("/mesh", vertices=mesh[0], faces=mesh[1], color=(180, 180, 180), visible=False)
        wxyz, pos = c2w_to_viser(self.poses[0])
        cam = self.server.initial_camera
        cam.position, cam.look_at, cam.up, cam.fov = pos, look_target(scene), self.up, self.fov0

    # ------------------------------------------------------------------ clients
    def _connect(self, client):
        settings = dict(self.defaults)
        session = ClientSession(client, self.renderer, settings)
        with self.lock:
            self.sessions[client.client_id] = session
        self._add_gui(client, session)
        wxyz, pos = c2w_to_viser(self.poses[0])  # open at the first training camera, exactly
        with client.atomic():
            client.camera.fov = self.fov0
            client.camera.position = pos
            client.camera.wxyz = wxyz
        client.camera.on_update(lambda _: session.touch())
        session.start().touch()

    def _disconnect(self, client):
        with self.lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.stop()  # its thread ends within one render piece; nothing is queued for it

    def _add_gui(self, client, session):
        gui, s = client.gui, session.settings
        res = gui.add_slider("Max resolution (px wide)", min=64, max=1600, step=32, initial_value=s["max_width"])
        ftime = gui.add_slider("Time per frame (s)", min=0.02, max=2.0, step=0.01, initial_value=s["frame_time"],
                               hint="time the first, coarse image after a camera move may take")
        mode = gui.add_dropdown("Show", MODES, initial_value=s["mode"])
        for handle, key in ((res, "max_width"), (ftime, "frame_time"), (mode, "mode")):
            handle.on_update(lambda _, h=handle, k=key: (s.__setitem__(k, h.value), session.touch()))
        if self.has_mesh:
            show = gui.add_checkbox("Show mesh", initial_value=False)
            show.on_update(lambda _: setattr(self.server.scene["/mesh"], "visible", show.value))
        gui.add_button("Save view as PNG").on_click(lambda _: self.save_png(session))
        with gui.add_folder("Camera path"):
            keys = gui.add_markdown("0 keyframes")
            seconds = gui.add_number("Duration (s)", initial_value=4.0, min=0.1, max=600.0, step=0.1)
            fps = gui.add_number("FPS", initial_value=30, min=1, max=120, step=1)
            session.keyframes, handles = [], []

            def add_key(_):
                c2w, fov, _aspect = session.camera()
                session.keyframes.append({"c2w": c2w, "fov_y": fov})
                wxyz, pos = c2w_to_viser(c2w)
                handles.append(client.scene.add_camera_frustum(
                    f"/keyframes/{len(session.keyframes):03d}", fov=fov, aspect=client.camera.aspect,
                    scale=0.1, wxyz=wxyz, position=pos, color=(220, 40, 40)))
                keys.content = f"{len(session.keyframes)} keyframes"

            def clear(_):
                session.keyframes.clear()
                for handle in handles:
                    handle.remove()
                handles.clear()
                keys.content = "0 keyframes"

            gui.add_button("Add keyframe").on_click(add_key)
            gui.add_button("Save path").on_click(lambda _: self.save_path(session, seconds.value, fps.value))
            gui.add_button("Clear keyframes").on_click(clear)

    # ------------------------------------------------------------------ outputs
    def _next_file(self, stem, ext):
        os.makedirs(self.out_dir, exist_ok=True)
        i = 0
        while os.path.exists(os.path.join(self.out_dir, f"{stem}_{i:03d}.{ext}")):
            i += 1
        return os.path.join(self.out_dir, f"{stem}_{i:03d}.{ext}")

    def save_png(self, session):
        """Render the tab's current view at its max resolution and write it as a PNG; returns the path."""
        c2w, fov, aspect = session.camera()
        w = int(session.settings["max_width"])
        out = self.renderer.render(c2w, fov, (w, max(1, round(w / aspect))))
        path = self._next_file("view", "png")
        imageio.imwrite(path, picture(out, session.settings["mode"], self.renderer.depth_range()))
        print(f"viewer: saved {path}")
        session.client.add_notification("Saved", path, auto_close_seconds=4.0)
        return path

    def save_path(self, session, seconds, fps):
        """Write the tab's keyframes as a camera path JSON (``viewer.paths``); returns the path."""
        if not session.keyframes:
            session.client.add_notification("No keyframes", "add keyframes first", auto_close_seconds=4.0)
            return None
        w = int(session.settings["max_width"])
        data = make_path(session.keyframes, (w, max(1, round(w / session.client.camera.aspect))),
                         fps=int(fps), seconds=float(seconds))
        path = self._next_file("path", "json")
        write_path(path, data)
        print(f"viewer: saved {path} ({len(data['frames'])} frames): render it with "
              f"`python eval.py --ckpt_path ... --path_json {path}`")
        session.client.add_notification("Saved", path, auto_close_seconds=4.0)
        return path

    def refresh_all(self):
        """Re-render every tab (new weights)."""
        with self.lock:
            sessions = list(self.sessions.values())
        for s in sessions:
            s.touch()

    def stop(self):
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.stop()
        self.server.stop()
        for s in sessions:
            s.thread.join(timeout=5.0)

    def serve_forever(self):
        """Block until Ctrl-C, then stop cleanly."""
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("\nviewer: stopping")
        finally:
            self.stop()
