# setup.py of the dsv4 binding: pure Python, no compiler. A plain setup.py (no pyproject.toml) so
# that `pip install bindings/python` works offline with Debian's setuptools: pip then builds without
# an isolated environment and downloads nothing.
from setuptools import setup

setup(
    name="dsv4",
    version="0.1.0",
    description="Python binding of libdsv4: DeepSeek-V4 language models on the CPU (pure Python over ctypes)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=["dsv4"],
    python_requires=">=3.9",
    extras_require={"numpy": ["numpy"]},
    classifiers=["Programming Language :: Python :: 3", "Operating System :: POSIX :: Linux"],
)
