"""Build hook: the wheel carries the top-level recipes/, notebooks/ and data_samples/ as ftkit/_shipped/.

Everything else about the package is in pyproject.toml. The list of shipped files is ftkit/resources.py's
SHIPPED (loaded by path: the build environment need not have ftkit's dependencies).
"""
import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ftkit_resources", HERE / "ftkit" / "resources.py")
resources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resources)


class BuildWithShippedFiles(build_py):
    """build_py, then copy each shipped file to <build>/ftkit/_shipped/<same relative path>."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "ftkit" / "_shipped"
        for folder in resources.SHIPPED:
            for rel in resources.shipped_files(folder, HERE):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(HERE / rel, target / rel)


setup(cmdclass={"build_py": BuildWithShippedFiles})
