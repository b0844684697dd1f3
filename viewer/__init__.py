"""A live web viewer (viser) for trained and training NeRFs.

- ``viewer.camera``: browser cameras (viser, OpenCV-style) <-> the project's poses (OpenGL-style),
  the scene's cameras, and the one-view dataset the viewer and ``eval.py --path_json`` render;
- ``viewer.paths``: camera paths (keyframes -> interpolated frames) as JSON;
- ``viewer.render``: the progressive render loop, one per browser tab;
- ``viewer.server``: the page (scene, GUI, clients);
- ``viewer.callback``: the same page live during ``train.py --viewer``.
"""
