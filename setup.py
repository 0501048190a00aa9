"""The one part of the build pyproject.toml cannot say: the optional C extension.

``dogpile_warm._binding_c`` binds warmable methods in C (see its source). It is
optional: where it does not compile (no compiler, another interpreter),
dogpile_warm uses the same binding written in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("dogpile_warm._binding_c", ["src/dogpile_warm/_binding_c.c"], optional=True)
    ]
)
