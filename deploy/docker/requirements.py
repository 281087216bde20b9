"""Print what an image installs from pyproject.toml: the dependencies and what builds the project.

Used by app.Dockerfile (the dependency layer) and build-images.sh (the wheelhouse), so the list is
declared once, in pyproject.toml.
"""

import sys
import tomllib

with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as f:
    project = tomllib.load(f)
print("\n".join([*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]))
