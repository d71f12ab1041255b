"""Build configuration that pyproject.toml cannot express stably: the optional C extension.

``kernels/_simd.c`` scores float16 / bfloat16 rows at memory speed on x86-64 CPUs (see its
header). It is optional: where it cannot be built (no C compiler, another architecture's
compiler rejecting the x86 target attributes) the package installs without it and
searches take the torch paths.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "multimodal_store.kernels._simd",
            sources=["kernels/_simd.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
