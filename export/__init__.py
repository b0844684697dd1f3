"""Turning a trained field into files other tools open: meshes and their colours, volume textures, previews."""
