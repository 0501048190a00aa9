"""The one part of the build pyproject.toml cannot say: the optional C extension.

``dogpile_warm._binding`` binds warmable methods in C (see its source). It is
optional: where it does not compile (no compiler, another interpreter),
dogpile_warm uses the same binding written in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("dogpile_warm._binding", ["src/dogpile_warm/_binding.c"], optional=True)]
)
