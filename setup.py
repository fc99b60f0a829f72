"""The package layout that pyproject.toml cannot express: the repository's folders (engine/,
gateway/, grammars/, integrations/, proto/) install under one namespace, `sluicegate.*`, so none of
them shadows another distribution's top-level name. Building also generates the gRPC modules from
proto/ into the wheel (grpcio-tools is a build requirement, not a runtime one)."""

import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOMS = ("engine", "gateway", "grammars", "integrations", "proto")
HERE = Path(__file__).resolve().parent


class BuildWithGrpcCode(build_py):
    """build_py, plus the modules protoc generates from proto/ written into the build tree."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install runs from the checkout, which generates its own
            return
        # Loaded by path: the package is not importable while it is being built.
        spec = importlib.util.spec_from_file_location("_proto_build", HERE / "gateway" / "proto_build.py")
        assert spec is not None and spec.loader is not None
        proto_build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(proto_build)
        if proto_build.build(Path(self.build_lib) / "sluicegate") != 0:
            raise RuntimeError("generating gRPC code from proto/ failed (see protoc's message above)")


setup(
    packages=["sluicegate", *(f"sluicegate.{name}" for name in find_packages(include=[f"{r}*" for r in ROOMS]))],
    package_dir={"sluicegate": "sluicegate", **{f"sluicegate.{room}": room for room in ROOMS}},
    package_data={"sluicegate": ["py.typed"], "sluicegate.proto": ["**/*.proto"],
                  "sluicegate.engine.kernels": ["csrc/*.cpp", "csrc/*.h"]},  # built on the user's machine (cpu_ops.py)
    cmdclass={"build_py": BuildWithGrpcCode},
)
