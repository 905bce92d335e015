"""Face depth rendering: where the face is, and depth images of it from many poses.

The paper's step 4 (skin isosurface -> 2-D depth images at 90 head poses) and step 6 (depth
adjustment), with a geometric face locator. See ``depth`` for the method.
"""

from ctface.render.depth import FaceRendering, project_points, render_face
from ctface.render.frame import FaceFrame, locate_face
from ctface.render.output import write_rendering
from ctface.render.views import View, pose_grid

__all__ = [
    "FaceFrame",
    "FaceRendering",
    "View",
    "locate_face",
    "pose_grid",
    "project_points",
    "render_face",
    "write_rendering",
]
