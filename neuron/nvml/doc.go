// Package nvml is the neuron.Discoverer of a GPU host: it reports the host's
// NVIDIA GPUs, driver and CUDA versions through NVML (the NVIDIA Management
// Library, libnvidia-ml.so), and samples each GPU's memory, utilisation and
// temperature for GET /health.
//
// The real implementation needs Linux and cgo; it loads libnvidia-ml.so.1
// at run time (dlopen), so a binary built with it still starts on a host
// without a driver. Other builds get a stub whose Discover reports no
// devices with GPUUnavailableReason "NVML not supported on this build".
//
// A host without NVML is not an error: Discover then reports no devices and
// says why in Discovery.GPUUnavailableReason (library missing) or
// Discovery.CUDAUnavailableReason (library present but NVML cannot start,
// for example a driver/library version mismatch). Either way no NVML
// device function is ever called after a failed nvmlInit, since doing so
// can bring the process down.
//
// Device indexes are NVML indexes, which follow PCI bus order. Engines
// started on these indexes through CUDA_VISIBLE_DEVICES should run with
// CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA numbers the GPUs the same way.
//
// Errors that concern one device (a failed temperature reading, a lost GPU)
// are not fatal: the device is reported with what could be read, and the
// problem is logged once, at warning level, through the logger given with
// WithLogger (and once more, at info level, when it clears).
package nvml
