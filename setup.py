"""The native part of dbward (the per-row masking kernel), built when a C compiler
and OpenSSL's headers are there; without them dbward runs the same code in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dbward.masking._native",
            ["src/dbward/masking/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
