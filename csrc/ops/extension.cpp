// The Python module tinyfast._C. Importing it runs the static registrations of the ops (each op's schema in
// csrc/ops/<op>.cpp, its kernels in cpu/ and cuda/); the module itself is empty.
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def("built_with_cuda() -> bool", []() {
#ifdef TINYFAST_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
}
