"""Builds tinyfast._C: C++ CPU kernels always, CUDA kernels when nvcc and a CUDA build of torch exist.

Facts behind the defaults below are in docs/build.md.
"""

import glob
import os
import shutil
import sysconfig

# torch.utils.cpp_extension reads CUDA_HOME once, at import: set the defaults first.
if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
# Without a visible GPU, cpp_extension cannot guess the architectures (IndexError).
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def cuda_include_dirs():
    """ATen/cuda headers include cusparse.h, which pip's CUDA torch keeps in nvidia/cu13/include."""
    site = sysconfig.get_paths()["purelib"]
    return [d for d in glob.glob(os.path.join(site, "nvidia", "cu*", "include")) if os.path.isdir(d)]


def want_cuda():
    if os.environ.get("TINYFAST_FORCE_CPU", "0") == "1":
        return False, "TINYFAST_FORCE_CPU=1"
    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if (
        CUDA_HOME is None
        or shutil.which("nvcc") is None
        and not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    ):
        return False, "nvcc not found"
    if not os.path.exists(os.path.join(CUDA_HOME, "include", "cuda_runtime.h")):
        return False, f"CUDA headers missing under {CUDA_HOME}"
    return True, ""


def make_extension():
    sources = sorted(glob.glob(os.path.join(CSRC, "ops", "*.cpp")))
    sources += sorted(glob.glob(os.path.join(CSRC, "ops", "cpu", "*.cpp")))
    cxx_flags = ["-O3", "-fopenmp"]
    common = dict(
        name="tinyfast._C",
        include_dirs=[os.path.join(ROOT, CSRC)],
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
    use_cuda, why_not = want_cuda()
    if not use_cuda:
        print(f"tinyfast: building CPU kernels only ({why_not})")
        return CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **common)
    sources += sorted(glob.glob(os.path.join(CSRC, "ops", "cuda", "*.cpp")))
    sources += sorted(glob.glob(os.path.join(CSRC, "ops", "cuda", "*.cu")))
    common["include_dirs"] += cuda_include_dirs()
    return CUDAExtension(
        sources=sources,
        define_macros=[("TINYFAST_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
        **common,
    )


setup(
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
