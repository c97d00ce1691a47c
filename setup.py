"""The optional C extension ``fixsecure._hotpath`` (``specs/hot-path.md``); all other project
metadata is in pyproject.toml. Without a C compiler the build skips it and fixsecure runs on the
pure-Python reference of the same functions."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fixsecure._hotpath",
            ["fixsecure/_hotpath.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c11"],
        )
    ]
)
