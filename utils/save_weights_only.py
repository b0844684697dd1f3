"""The old path of ``save_weights_only.py`` (top level now): runs it with the same arguments."""
import os, runpy, sys; sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__))); runpy.run_path(os.path.join(sys.path[0], "save_weights_only.py"), run_name="__main__")  # noqa: E401,E702,E501
