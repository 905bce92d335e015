"""Face depth rendering: where the face is, and depth images of it from many poses.

The paper's step 4 (skin isosurface -> 2-D depth images at 90 head poses) and step 6 (depth
adjustment), with a geometric face locator. See ``depth`` for the method.
"""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "depth": ["FaceRendering", "project_points", "render_face"],
        "output": ["write_rendering"],
        "views": ["View", "pose_grid"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.render.depth import FaceRendering as FaceRendering
    from ctface.render.depth import project_points as project_points
    from ctface.render.depth import render_face as render_face
    from ctface.render.output import write_rendering as write_rendering
    from ctface.render.views import View as View
    from ctface.render.views import pose_grid as pose_grid
