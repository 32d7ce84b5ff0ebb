"""pyopencl host code: device choice, kernel builds, op launchers and the models on an OpenCL device."""
