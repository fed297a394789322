"""Build configuration that pyproject.toml cannot declare: the example configs inside the package.

The example configs live in configs/ at the repository's root, where the README, the docs and the tests
name them (configs/NAME.yaml). The wheel and the sdist carry the same files as the data-only package
kerasrun.configs (site-packages/kerasrun/configs/*.yaml), so an installed kerasrun can train them without
the repository. setuptools maps that package to the configs/ folder (package_dir): nothing is copied or
linked at build time, and there is one copy of every config. pyproject.toml cannot say this, because its
package discovery (packages.find) cannot be combined with a package that lives elsewhere.

In an installed kerasrun, importlib.resources.files("kerasrun") / "configs" is that folder. An editable
install (pip install -e .) imports kerasrun from the checkout, whose configs/ folder is the one to use.
"""

from setuptools import find_namespace_packages, setup

setup(
    # The same discovery as `[tool.setuptools.packages.find] include = ["kerasrun*"]`, plus the mapped folder.
    packages=[*find_namespace_packages(include=["kerasrun", "kerasrun.*"]), "kerasrun.configs"],
    package_dir={"kerasrun.configs": "configs"},
    package_data={"kerasrun": ["py.typed"], "kerasrun.configs": ["*.yaml"]},
)
