"""The package layout that pyproject.toml cannot express: the repository's folders (engine/,
gateway/, grammars/, integrations/, proto/) install under one namespace, `sluicegate.*`, so none of
them shadows another distribution's top-level name."""

from setuptools import find_packages, setup

ROOMS = ("engine", "gateway", "grammars", "integrations", "proto")

setup(
    packages=["sluicegate", *(f"sluicegate.{name}" for name in find_packages(include=[f"{r}*" for r in ROOMS]))],
    package_dir={"sluicegate": "sluicegate", **{f"sluicegate.{room}": room for room in ROOMS}},
    package_data={"sluicegate": ["py.typed"], "sluicegate.proto": ["**/*.proto"]},
)
